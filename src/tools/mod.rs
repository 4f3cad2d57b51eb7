//! The operator's commands: one function per command of the binary (`cli`),
//! the checks before each cutover step (`preflight`), the DNS lookups they and
//! the DKIM key check make (`dns`), and one-sentence AWS errors
//! (`aws_summary`).

pub(crate) mod aws_summary;
pub mod cli;
pub mod dns;
pub mod preflight;

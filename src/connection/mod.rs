//! The connection side: accepting Postfix's connections (`listener`, behind an
//! optional PROXY header: `proxy`), TLS (`tls`), one SMTP session per
//! connection (`session`) and the protocol without I/O under it (`smtp`).

pub(crate) mod listener;
pub mod proxy;
pub mod session;
pub mod smtp;
pub mod tls;

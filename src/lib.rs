//! ses-relay: an SMTP relay between a Postfix fleet and Amazon SES.
//!
//! # Layout
//!
//! Postfix → listener → session → route → prepare (Received, DKIM) → forward
//! (SES v2 API, legacy SMTP proxy, or the outbox dry run), one disposition per
//! transaction feeding the log, the metrics and the rollback guard.
//!
//! The data path drawn in full, the order in which modules import each other and
//! the map of every module and file are in `docs/architecture.md` in the
//! repository; each module's own doc says what it owns.

#![forbid(unsafe_code)]

pub mod admin;
pub(crate) mod aws_summary;
pub(crate) mod background;
pub mod build_info;
pub mod cli;
pub mod config;
pub mod cutover;
pub mod descriptors;
pub(crate) mod disposition;
pub mod dkim_rotation;
pub mod dns;
pub mod envelope;
pub mod feedback;
pub mod files;
pub mod forward;
pub mod guard;
pub(crate) mod listener;
pub mod log;
pub mod metrics;
pub(crate) mod net;
pub(crate) mod notify;
pub mod preflight;
pub mod prepare;
pub mod proxy;
pub mod received;
pub mod route;
pub mod server;
pub mod session;
pub mod shutdown;
pub mod smtp;
pub mod state;
pub mod tls;

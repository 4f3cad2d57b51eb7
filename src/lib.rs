//! ses-relay: an SMTP relay between a Postfix fleet and Amazon SES.
//!
//! # Layout
//!
//! Postfix → [`connection`] (listener, session) → [`message`] (route, prepare:
//! Received and DKIM, forward: SES v2 API, legacy SMTP proxy or the outbox dry
//! run) → one disposition per transaction feeding the log, the metrics and
//! [`control`] (the rollback guard, the cutover, the admin API). [`daemon`]
//! wires and runs it; [`tools`] are the operator's commands.
//!
//! The data path drawn in full, the order in which modules import each other and
//! the map of every module and file are in `docs/architecture.md` in the
//! repository; each module's own doc says what it owns.

#![forbid(unsafe_code)]

pub mod config;
pub mod connection;
pub mod control;
pub mod daemon;
pub mod files;
pub mod log;
pub mod message;
pub mod metrics;
pub(crate) mod net;
pub mod tools;

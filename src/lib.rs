//! ses-relay: an SMTP relay between a Postfix fleet and Amazon SES.
//!
//! # Layout
//!
//! ```text
//! Postfix ──SMTP──▶ listener ──▶ session (state machine, one per connection)
//!                                   │  first RCPT: router picks the route
//!                                   ▼
//!                   ┌──────────── route::Route ────────────┐
//!                   │ Ses: recipients accepted locally;     │
//!                   │ after DATA: prepare → forward::ses    │
//!                   │ (or forward::outbox, the dry run)     │
//!                   └───────────────────────────────────────┘
//!         prepare = Received header + DKIM signature + X-SES-CONFIGURATION-SET
//!         side rooms: config, metrics, log (PII masking), tls, shutdown
//! ```
//!
//! - [`smtp`]: the protocol without I/O: command framing, DATA receiving, replies.
//! - [`session`]: one SMTP connection: states, one handler per command.
//! - [`listener`]: accepting connections, admission (allowed networks, connection cap).
//! - [`route`]: which upstream a transaction takes.
//! - [`prepare`]: Received, DKIM ([`prepare::dkim`]), route headers.
//! - [`forward`]: the upstreams ([`forward::ses`], [`forward::outbox`]) and the
//!   one mapping of upstream failures to SMTP replies.
//! - [`cutover`], [`admin`]: the runtime knob and the operators' HTTP API (metrics, status page).
//! - [`preflight`], [`dns`]: the checks before each cutover step.
//! - [`config`], [`log`], [`metrics`], [`tls`], [`shutdown`], [`notify`]: the side rooms.
//! - [`server`]: wires it all together for `ses-relay run`.

pub mod admin;
pub mod config;
pub mod cutover;
pub mod dns;
pub mod envelope;
pub mod forward;
pub mod listener;
pub mod log;
pub mod metrics;
pub mod notify;
pub mod preflight;
pub mod prepare;
pub mod route;
pub mod server;
pub mod session;
pub mod shutdown;
pub mod smtp;
pub mod tls;

//! ses-relay: an SMTP relay between a Postfix fleet and Amazon SES.
//!
//! # Layout
//!
//! ```text
//! Postfix ──SMTP──▶ listener (PROXY header, allow-list, cap) ──▶ session (state machine, one per connection)
//!                                     │ first RCPT: Router (policy only) picks a Route,
//!                                     │ Upstreams gives its Upstream, begin(&MailFrom)
//!                                     ▼
//!                      Box<dyn forward::Transaction>, held to the end of DATA
//!                      ├─ recipient(addr) → Reply   (SES, outbox: 250 here; legacy: the relay's own)
//!                      └─ data(&Envelope, message) → Accepted | UpstreamError { retry, status, source }
//!         end of DATA = refuse early → prepare → deliver → finish (every path: reply, metrics, log line,
//!                       each labelled by one Disposition: delivered | deferred | rejected | refused)
//!         prepare = Received header + DKIM signature (+ X-SES-CONFIGURATION-SET on SES),
//!                   on the signing pool (one thread per core); on SES exactly one From and
//!                   one DKIM-Signature leave, client X-SES-* headers do not (tags → EmailTags)
//!         every SES outcome → guard (failure ratio, delay; SES events via feedback)
//!         relay = the state sessions share (Relay, and Live: what SIGHUP replaces); server builds it
//!         side rooms: config, cutover store (file | SSM), metrics, admin HTTP,
//!                     log (PII masking), tls, shutdown
//! ```
//!
//! Imports run one way (no module imports one that imports it back): `config`
//! and the vocabularies (`route::Route`, `disposition`, `envelope`, `net`) at the
//! bottom; `smtp`, `prepare`, `forward`, `cutover`, `guard` above them; `relay`,
//! then `session`, `listener`, `admin`; `server` and `cli` on top.
//!
//! - [`smtp`]: the protocol without I/O: command framing, DATA receiving, replies.
//! - [`session`]: one SMTP connection: states, one handler per command, the end of DATA.
//! - `listener`: accepting connections, admission (allowed networks, connection cap, the
//!   PROXY header's client); [`proxy`]: parsing the PROXY header a load balancer sends first.
//! - [`route`]: which route a transaction takes (rules, the percentage split), and
//!   what a percentage may be.
//! - [`envelope`]: the transaction's envelope, `MailFrom` with its parameters.
//! - [`prepare`]: Received, DKIM ([`prepare::dkim`]), route headers, message
//!   tags ([`prepare::tags`]), and the threads that do it ([`prepare::pool`]).
//! - [`forward`]: the `Upstream` / `Transaction` traits, `UpstreamError` and its one
//!   reply, `Upstreams`; the upstreams themselves ([`forward::ses`]: SendEmail as
//!   signed HTTP; [`forward::legacy`]: the SMTP proxy; [`forward::outbox`]: the dry run).
//! - [`relay`]: the shared state ([`relay::Relay`], [`relay::Live`]).
//! - [`cutover`], [`admin`]: the runtime knob (kept in a state file, or shared by a
//!   fleet in SSM: [`cutover::ssm`]) and the operators' HTTP API (metrics, status page;
//!   tokens and connection bounds in [`admin::access`]).
//! - `guard`: the rollback guard (the plan's rollback conditions over a window, the trip);
//!   [`feedback`]: SES's events from SQS for it; `received`: when the fleet first took a message.
//! - [`preflight`], [`dns`]: the checks before each cutover step; [`dkim_rotation`]: which
//!   DKIM key signs each domain (startup choice, the DNS check's switch to a confirmed newer key).
//! - [`config`], [`log`], [`metrics`], [`tls`], [`shutdown`], `notify`, `net`: the side rooms;
//!   `disposition`: the four words every outcome is counted under.
//! - [`server`]: wires it all together for `ses-relay run`; `background`: its
//!   tasks besides serving (guard start, SSM refresh, DKIM DNS check); [`cli`]: one
//!   function per command of the binary (`main.rs` only parses the command line).
//! - [`build_info`], `aws_error`, `cutover_cli`: what the operator's commands
//!   print (version line, one-sentence AWS errors, the cutover table).

#![forbid(unsafe_code)]

pub mod admin;
pub(crate) mod aws_error;
pub(crate) mod background;
pub mod build_info;
pub mod cli;
pub mod config;
pub mod cutover;
pub(crate) mod cutover_cli;
pub(crate) mod disposition;
pub mod dkim_rotation;
pub mod dns;
pub mod envelope;
pub mod feedback;
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
pub mod relay;
pub mod route;
pub mod server;
pub mod session;
pub mod shutdown;
pub mod smtp;
pub mod tls;

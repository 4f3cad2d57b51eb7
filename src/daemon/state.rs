//! The part of the relay SIGHUP replaces ([`Reloadable`]) and the one cell
//! that holds it ([`ReloadableCell`]). Built by `server`, read by sessions,
//! the listener and the admin API, each of which gets only the handles it
//! uses besides (the session's `SessionContext`, the admin API's `AdminState`).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};

use tokio_rustls::TlsAcceptor;

use crate::config::{RuleConfig, SmtpConfig};
use crate::connection::smtp::DataMemory;
use crate::message::prepare::Preparer;

/// What SIGHUP can replace: each session takes a snapshot when it starts.
pub struct Reloadable {
    /// `[smtp]` as loaded (allowed clients, limits).
    pub smtp: SmtpConfig,
    /// STARTTLS / implicit TLS, when `[smtp.tls]` is set.
    pub tls: Option<TlsAcceptor>,
    /// Received + DKIM + route headers.
    pub preparer: Preparer,
    /// `[[cutover.rules]]` as configured (shown by `GET /cutover`).
    pub rules: Vec<RuleConfig>,
    /// The admin bearer token; `None` refuses every change.
    pub admin_token: Option<String>,
    /// `admin.read-token-file`'s token: reads need it (or the write token) when set.
    pub admin_read_token: Option<String>,
}

/// The reloadable part in force, shared by everyone who reads the config at
/// run time (sessions, the listener, the admin API); SIGHUP replaces it whole.
/// It also holds the message-byte budget, whose limit a reload changes.
pub struct ReloadableCell {
    live: RwLock<Arc<Reloadable>>,
    /// Bumped by every reload, so sessions notice a new config cheaply.
    generation: AtomicU64,
    /// Message bytes held by all sessions, against `smtp.max-data-memory`.
    data_memory: Arc<DataMemory>,
}

impl ReloadableCell {
    /// The cell holding `live`, with a byte budget of its `max-data-memory`
    /// reported to the relay's gauge.
    pub fn new(live: Reloadable) -> Arc<ReloadableCell> {
        Arc::new(ReloadableCell {
            data_memory: DataMemory::observed(
                live.smtp.max_data_memory.as_usize(),
                crate::metrics::data_memory,
            ),
            generation: AtomicU64::new(0),
            live: RwLock::new(Arc::new(live)),
        })
    }

    /// The reloadable part in force now.
    pub fn current(&self) -> Arc<Reloadable> {
        self.live.read().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// How many reloads have been applied.
    pub fn generation(&self) -> u64 {
        self.generation.load(Ordering::Acquire)
    }

    /// The message-byte budget all sessions share.
    pub fn data_memory(&self) -> &Arc<DataMemory> {
        &self.data_memory
    }

    /// Puts a new reloadable part in force for new sessions (and for the
    /// checks open sessions make at each command).
    pub(crate) fn replace(&self, live: Reloadable) {
        self.data_memory
            .set_limit(live.smtp.max_data_memory.as_usize());
        *self.live.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(live);
        self.generation.fetch_add(1, Ordering::AcqRel);
    }
}

//! The state every session shares ([`SharedState`]) and the part of it SIGHUP
//! replaces ([`Reloadable`]). Built by `server`, read by sessions, the listener and
//! the admin API.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};

use tokio_rustls::TlsAcceptor;

use crate::config::{RuleConfig, SmtpConfig};
use crate::connection::smtp::DataMemory;
use crate::control::cutover::Cutover;
use crate::control::guard::Guard;
use crate::daemon::background::UpstreamHealth;
use crate::daemon::shutdown::Shutdown;
use crate::log::Masker;
use crate::message::envelope::TransactionIds;
use crate::message::forward::Upstreams;
use crate::message::prepare::Preparer;
use crate::message::prepare::pool::SigningPool;
use crate::message::route::Router;

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

/// What [`SharedState::new`] is built from.
pub struct SharedParts {
    /// The reloadable part at start.
    pub live: Reloadable,
    /// Route choice.
    pub router: Router,
    /// Each route's upstream.
    pub upstreams: Upstreams,
    /// The owner of the SES share.
    pub cutover: Cutover,
    /// Log privacy.
    pub masker: Masker,
    /// The rollback guard ([`Guard::disabled`] when off).
    pub guard: Arc<Guard>,
    /// The legacy relay's probe's view (SMTP legacy route only).
    pub legacy_health: Option<UpstreamHealth>,
}

/// What every session shares.
pub struct SharedState {
    live: RwLock<Arc<Reloadable>>,
    /// Bumped by every reload, so sessions notice a new config cheaply.
    generation: AtomicU64,
    /// Message bytes held by all sessions, against `smtp.max-data-memory`.
    pub data_memory: Arc<DataMemory>,
    /// Route choice (the policy; it reads the SES share from the cutover).
    pub router: Router,
    /// Each route's upstream.
    pub upstreams: Upstreams,
    /// The owner of the SES share: its store, its one way in.
    pub cutover: Cutover,
    /// Transaction ids.
    pub ids: TransactionIds,
    /// Log privacy.
    pub masker: Masker,
    /// The stop switch.
    pub shutdown: Shutdown,
    /// The legacy relay's health as its probe last saw it (SMTP legacy route only).
    pub legacy_health: Option<UpstreamHealth>,
    /// The threads that sign.
    pub signer: SigningPool,
    /// The rollback guard (disabled unless `guard.enabled`).
    pub guard: Arc<Guard>,
}

impl SharedState {
    /// A relay from its parts, whole in one step (tests build one around a
    /// fake upstream).
    pub fn new(parts: SharedParts) -> SharedState {
        let SharedParts {
            live,
            router,
            upstreams,
            cutover,
            masker,
            guard,
            legacy_health,
        } = parts;
        SharedState {
            data_memory: DataMemory::observed(
                live.smtp.max_data_memory.as_usize(),
                crate::metrics::data_memory,
            ),
            generation: AtomicU64::new(0),
            live: RwLock::new(Arc::new(live)),
            router,
            upstreams,
            cutover,
            ids: TransactionIds::default(),
            masker,
            shutdown: Shutdown::new(),
            legacy_health,
            signer: SigningPool::per_core(),
            guard,
        }
    }

    /// The reloadable part in force now.
    pub fn reloadable(&self) -> Arc<Reloadable> {
        self.live.read().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// How many reloads have been applied.
    pub fn generation(&self) -> u64 {
        self.generation.load(Ordering::Acquire)
    }

    /// Puts a new reloadable part in force for new sessions (and for the
    /// checks open sessions make at each command).
    pub(crate) fn replace_reloadable(&self, live: Reloadable) {
        self.data_memory
            .set_limit(live.smtp.max_data_memory.as_usize());
        *self.live.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(live);
        self.generation.fetch_add(1, Ordering::AcqRel);
    }
}

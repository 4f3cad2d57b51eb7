//! What a session uses of the relay, and nothing else: the handles it reads
//! (the reloadable config, the route choice, the upstreams), the ones it
//! feeds (the rollback guard through its outcome recorder) and the stop
//! switch. Built whole by the wiring; a test builds one around a fake
//! upstream with [`SessionContext::new`].

use std::sync::Arc;

use crate::control::guard::Guard;
use crate::daemon::shutdown::Shutdown;
use crate::daemon::state::{Reloadable, ReloadableCell};
use crate::log::Masker;
use crate::message::envelope::TransactionIds;
use crate::message::forward::Upstreams;
use crate::message::prepare::pool::SigningPool;
use crate::message::route::Router;

/// Everything a session reaches, shared by all sessions of the relay.
pub struct SessionContext {
    /// The reloadable part in force (limits, allowed clients, TLS, the preparer).
    pub reloadable: Arc<ReloadableCell>,
    /// Route choice (the policy; it reads the SES share the cutover publishes).
    pub router: Arc<Router>,
    /// Each route's upstream.
    pub upstreams: Upstreams,
    /// Transaction ids.
    pub ids: TransactionIds,
    /// Log privacy.
    pub masker: Masker,
    /// The stop switch.
    pub shutdown: Shutdown,
    /// The threads that sign.
    pub signer: SigningPool,
    /// The rollback guard (disabled unless `guard.enabled`), fed each SES answer.
    pub guard: Arc<Guard>,
}

impl SessionContext {
    /// A context for sessions of a relay that is not wired by `server`
    /// (tests, benchmarks): `live` in force, every route to `upstreams`
    /// chosen by `router`, the guard off, addresses masked, a fresh stop switch.
    pub fn new(live: Reloadable, router: Router, upstreams: Upstreams) -> SessionContext {
        SessionContext {
            reloadable: ReloadableCell::new(live),
            router: Arc::new(router),
            upstreams,
            ids: TransactionIds::default(),
            masker: Masker::new(true),
            shutdown: Shutdown::new(),
            signer: SigningPool::per_core(),
            guard: Arc::new(Guard::disabled()),
        }
    }
}

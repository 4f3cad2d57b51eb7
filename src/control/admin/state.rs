//! What the admin API uses of the relay, and nothing else: the reloadable
//! config (its tokens, rules and DKIM keys), the cutover it reads and
//! changes, the router (whether there is a legacy route), the guard it
//! shows, the legacy relay's probe and the stop switch `/readyz` reports.

use std::sync::Arc;

use crate::control::cutover::Cutover;
use crate::control::guard::Guard;
use crate::daemon::background::UpstreamHealth;
use crate::daemon::shutdown::Shutdown;
use crate::daemon::state::ReloadableCell;
use crate::message::route::Router;

/// The admin API's handles, built whole by the wiring.
pub struct AdminState {
    /// The reloadable part in force (`admin_token`, `admin_read_token`, rules, keys).
    pub reloadable: Arc<ReloadableCell>,
    /// The owner of the SES share: `GET` and `PUT /cutover`.
    pub cutover: Cutover,
    /// Route choice, shared with the sessions.
    pub router: Arc<Router>,
    /// The rollback guard, as the status page and `GET /cutover` show it.
    pub guard: Arc<Guard>,
    /// The legacy relay's probe's view (SMTP legacy route only).
    pub legacy_health: Option<UpstreamHealth>,
    /// The stop switch: `/readyz` answers 503 while the relay drains.
    pub shutdown: Shutdown,
}

#[cfg(test)]
impl AdminState {
    /// The admin side of a relay with both routes that is not wired by the
    /// server: `live` in force, the cutover in memory at `ses_percent`, the
    /// guard off, no probe. One constructor for the API's and the status
    /// page's tests.
    pub(crate) fn for_tests(
        live: crate::daemon::state::Reloadable,
        ses_percent: f64,
    ) -> Arc<AdminState> {
        let cutover = Cutover::load(std::path::Path::new(""), ses_percent).unwrap();
        Arc::new(AdminState {
            reloadable: ReloadableCell::new(live),
            router: Arc::new(Router::new(true, Vec::new(), cutover.share())),
            cutover,
            guard: Arc::new(Guard::disabled()),
            legacy_health: None,
            shutdown: Shutdown::new(),
        })
    }
}

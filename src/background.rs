//! What the relay does on its own while it serves: the rollback guard as
//! `[guard]` and the cutover state start it, the refresh of the shared
//! cutover store (SSM), and the periodic check of the DKIM DNS records.
//!
//! Each task takes the parts of the relay it acts on, not the relay: this
//! module is used by the wiring (`server.rs`) and uses nothing of it.

use std::time::Duration;

use crate::config::Config;
use crate::cutover::{Cutover, Source};
use crate::dns::TxtResolver;
use crate::guard::Guard;
use crate::prepare::dkim::DkimKeys;
use crate::route::Router;
use crate::shutdown::Shutdown;

/// The rollback guard from `[guard]`, tripped still if the cutover state in
/// force came from its trip (a restart keeps the guard's percentage and alert).
pub fn start_guard(config: &Config, cutover: &Cutover) -> Guard {
    let can_move_traffic = config.legacy.is_some();
    let guard = Guard::new(&config.guard, can_move_traffic);
    if !config.guard.enabled {
        return guard;
    }
    if can_move_traffic {
        tracing::info!(
            fallback_percent = config.guard.fallback_percent,
            window = %crate::guard::format_duration(config.guard.window.0),
            "rollback guard armed"
        );
    } else {
        tracing::warn!(
            "rollback guard: no [legacy] route, so it can only alert: it judges, logs and \
             sets ses_relay_guard_tripped, but cannot move traffic"
        );
    }
    if config.feedback.sqs_queue_url.is_empty() {
        tracing::warn!(
            "rollback guard: feedback.sqs-queue-url is not set, so bounce and complaint ratios are not judged"
        );
    }
    let status = cutover.status();
    if status.source == Source::Guard {
        tracing::warn!(
            ses_percent = status.ses_percent,
            reason = status.reason.as_deref().unwrap_or(""),
            "rollback guard: still tripped from before the restart; a cutover change re-arms it"
        );
        guard.restore_trip(status.reason);
    }
    guard
}

/// Reads the shared cutover store every `interval` until shutdown.
pub async fn refresh_cutover_periodically(
    cutover: &Cutover,
    router: &Router,
    guard: &Guard,
    shutdown: &Shutdown,
    interval: Duration,
) {
    let mut ticks = tokio::time::interval_at(tokio::time::Instant::now() + interval, interval);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = shutdown.triggered() => return,
            _ = ticks.tick() => {
                // An operator's change made through another relay re-arms this
                // relay's guard too, as it does where it was made.
                if cutover.refresh(router).await == Some(Source::Api) {
                    guard.rearm();
                }
            }
        }
    }
}

/// Checks every DKIM key's DNS record now and then every `interval`, setting
/// `ses_relay_dkim_dns_consistent`, until shutdown; while a newer key of a
/// domain waits for its record, every `dkim.rotation-check-interval`, and
/// the round that confirms it makes it sign ([`crate::dkim_rotation`]).
/// `live` gives what is in force at each round (a reload may change the
/// keys), `keys` its keys.
pub async fn check_dns_periodically<L>(
    live: impl Fn() -> L,
    keys: fn(&L) -> &DkimKeys,
    resolver: &dyn TxtResolver,
    shutdown: &Shutdown,
    interval: Duration,
) {
    loop {
        let live = live();
        let wait = crate::dkim_rotation::check_round(keys(&live), resolver, interval).await;
        drop(live);
        tokio::select! {
            _ = shutdown.triggered() => return,
            _ = tokio::time::sleep(wait) => {}
        }
    }
}

//! What the relay does on its own while it serves: the rollback guard as
//! `[guard]` and the cutover state start it, the refresh of the shared
//! cutover store (SSM), the legacy relay's health probe, and the periodic
//! check of the DKIM DNS records.
//!
//! Each task is a named struct holding the parts of the relay it acts on,
//! not the relay, with `run(self, shutdown)`: this module is used by the
//! wiring (`server.rs`) and uses nothing of it.

use std::sync::Arc;
use std::sync::atomic::{AtomicU8, Ordering};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::config::Config;
use crate::control::cutover::{Cutover, Source};
use crate::control::guard::{Guard, State};
use crate::daemon::shutdown::Shutdown;
use crate::daemon::state::ReloadableCell;
use crate::tools::dns::TxtResolver;

/// The rollback guard from `[guard]`, acting through `cutover`; tripped still
/// if the value in force came from its trip.
pub fn start_guard(config: &Config, cutover: &Cutover) -> Guard {
    let can_move_traffic = config.legacy.is_some();
    let guard = Guard::new(&config.guard, cutover.clone(), can_move_traffic);
    if !config.guard.enabled {
        return guard;
    }
    if can_move_traffic {
        tracing::info!(
            fallback_percent = config.guard.fallback_percent,
            window = %crate::control::guard::format_duration(config.guard.window.0),
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
    if status.source == Source::Guard && guard.state() == State::Tripped {
        tracing::warn!(
            ses_percent = status.ses_percent,
            reason = status.reason.as_deref().unwrap_or(""),
            "rollback guard: still tripped from before the restart; a cutover change re-arms it"
        );
    }
    guard
}

/// Reads the shared cutover store every `refresh-interval` (SSM store).
pub struct CutoverRefresh {
    /// The cutover to refresh.
    pub cutover: Cutover,
    /// How often.
    pub interval: Duration,
}

impl CutoverRefresh {
    /// Until shutdown.
    pub async fn run(self, shutdown: Shutdown) {
        let mut ticks =
            tokio::time::interval_at(tokio::time::Instant::now() + self.interval, self.interval);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = shutdown.triggered() => return,
                _ = ticks.tick() => { self.cutover.refresh().await; }
            }
        }
    }
}

/// Re-arms the guard as soon as an operator's change is in force (through
/// the API here, or read from SSM), so its metric and log follow at once;
/// the guard also checks for itself before each judgement.
pub struct GuardFollowsOperators {
    /// The guard.
    pub guard: Arc<Guard>,
    /// The cutover whose operators' changes re-arm it.
    pub cutover: Cutover,
}

impl GuardFollowsOperators {
    /// Until shutdown.
    pub async fn run(self, shutdown: Shutdown) {
        let mut changes = self.cutover.operator_changes();
        loop {
            tokio::select! {
                _ = shutdown.triggered() => return,
                changed = changes.changed() => {
                    if changed.is_err() {
                        return;
                    }
                    // Looking is enough: the guard re-arms when it sees a new change.
                    let _ = self.guard.state();
                }
            }
        }
    }
}

/// How often the legacy relay's health is probed (one connection per probe).
pub const UPSTREAM_PROBE_INTERVAL: Duration = Duration::from_secs(5);

/// An upstream's reachability as the probe last saw it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Health {
    /// Not probed yet.
    Unknown,
    /// The last probe got the relay's 220 greeting.
    Up,
    /// The last probe failed (no connection, no greeting, or not 220).
    Down,
}

impl Health {
    /// As `GET /cutover` and the status page show it.
    pub fn as_str(self) -> &'static str {
        match self {
            Health::Unknown => "unknown",
            Health::Up => "up",
            Health::Down => "down",
        }
    }
}

/// The legacy route's health as the probe publishes it (cheap to clone).
#[derive(Debug, Clone, Default)]
pub struct UpstreamHealth(Arc<AtomicU8>);

impl UpstreamHealth {
    /// The health now.
    pub fn get(&self) -> Health {
        match self.0.load(Ordering::Acquire) {
            1 => Health::Up,
            2 => Health::Down,
            _ => Health::Unknown,
        }
    }

    fn set(&self, health: Health) {
        let value = match health {
            Health::Unknown => 0,
            Health::Up => 1,
            Health::Down => 2,
        };
        self.0.store(value, Ordering::Release);
    }
}

/// Probes the legacy relay every [`UPSTREAM_PROBE_INTERVAL`]: connect, read
/// its greeting, `QUIT`. The result is `ses_relay_upstream_up{route="legacy"}`
/// and [`UpstreamHealth`], never readiness: every relay shares the same
/// legacy relay, so a fault there is not a reason to take any relay out.
pub struct LegacyProbe {
    /// `host:port` of the legacy relay.
    pub relay: String,
    /// Where the result is published.
    pub health: UpstreamHealth,
}

impl LegacyProbe {
    /// Until shutdown.
    pub async fn run(self, shutdown: Shutdown) {
        let mut was = Health::Unknown;
        loop {
            let health = match probe(&self.relay).await {
                Ok(()) => Health::Up,
                Err(reason) => {
                    if was != Health::Down {
                        tracing::warn!(route = "legacy", relay = %self.relay, %reason, "upstream down (health probe)");
                    }
                    Health::Down
                }
            };
            if health == Health::Up && was == Health::Down {
                tracing::info!(route = "legacy", relay = %self.relay, "upstream up again (health probe)");
            }
            self.health.set(health);
            crate::metrics::upstream_up("legacy", health == Health::Up);
            was = health;
            tokio::select! {
                _ = shutdown.triggered() => return,
                _ = tokio::time::sleep(UPSTREAM_PROBE_INTERVAL) => {}
            }
        }
    }
}

/// Why a probe found the legacy relay down.
#[derive(Debug, thiserror::Error)]
enum ProbeError {
    /// No connection within 2 s.
    #[error("connect timed out")]
    ConnectTimeout,
    /// The connection was refused or failed.
    #[error("connect: {0}")]
    Connect(#[source] std::io::Error),
    /// Connected, but no whole greeting within 2 s.
    #[error("no greeting within 2 s")]
    NoGreeting,
    /// Reading the greeting failed.
    #[error("read: {0}")]
    Read(#[source] std::io::Error),
    /// Closed (or past 4 KiB) before the greeting's last line.
    #[error("connection closed before the greeting")]
    Closed,
    /// A greeting other than 220 (421: busy, 554: refused).
    #[error("greeting {0}, not 220")]
    NotReady(String),
}

/// One probe: the greeting must be a 220 within 2 s of connecting.
async fn probe(relay: &str) -> Result<(), ProbeError> {
    let step = Duration::from_secs(2);
    let mut stream = tokio::time::timeout(step, tokio::net::TcpStream::connect(relay))
        .await
        .map_err(|_| ProbeError::ConnectTimeout)?
        .map_err(ProbeError::Connect)?;
    let mut greeting = Vec::new();
    let mut chunk = [0u8; 512];
    // The greeting's last line has a space after the code ("220 ", not "220-").
    while !last_line_complete(&greeting) {
        let n = tokio::time::timeout(step, stream.read(&mut chunk))
            .await
            .map_err(|_| ProbeError::NoGreeting)?
            .map_err(ProbeError::Read)?;
        if n == 0 || greeting.len() > 4096 {
            return Err(ProbeError::Closed);
        }
        greeting.extend_from_slice(&chunk[..n]);
    }
    let _ = stream.write_all(b"QUIT\r\n").await;
    if greeting.starts_with(b"220") {
        Ok(())
    } else {
        let first = String::from_utf8_lossy(&greeting[..greeting.len().min(3)]).into_owned();
        Err(ProbeError::NotReady(first))
    }
}

fn last_line_complete(text: &[u8]) -> bool {
    if !text.ends_with(b"\n") {
        return false;
    }
    let body = &text[..text.len() - 1];
    let start = body.iter().rposition(|&b| b == b'\n').map_or(0, |i| i + 1);
    body.get(start + 3) != Some(&b'-')
}

/// Checks every DKIM key's DNS record now and then every `interval`, setting
/// `ses_relay_dkim_dns_consistent`, until shutdown; while a newer key of a
/// domain waits for its record, every `dkim.rotation-check-interval`, and
/// the round that confirms it makes it sign ([`crate::control::dkim_rotation`]).
/// Each round checks the keys in force then (a reload may change them).
pub struct DkimDnsCheck {
    /// The reloadable part, whose preparer holds the keys.
    pub reloadable: Arc<ReloadableCell>,
    /// The resolver asked.
    pub resolver: Arc<dyn TxtResolver>,
    /// `dkim.dns-check-interval`.
    pub interval: Duration,
}

impl DkimDnsCheck {
    /// Checks until `shutdown`.
    pub async fn run(self, shutdown: Shutdown) {
        loop {
            let live = self.reloadable.current();
            let wait = crate::control::dkim_rotation::check_round(
                live.preparer.dkim(),
                self.resolver.as_ref(),
                self.interval,
            )
            .await;
            drop(live);
            tokio::select! {
                _ = shutdown.triggered() => return,
                _ = tokio::time::sleep(wait) => {}
            }
        }
    }
}

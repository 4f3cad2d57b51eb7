//! The rollback guard: the migration plan's rollback conditions, judged by
//! the relay over a sliding window, and the trip that moves the SES share to
//! `guard.fallback-percent` through the same path as `PUT /cutover`.
//!
//! [`Judge`] is the policy: pure arithmetic over timestamped observations
//! (no clock, no I/O), so its edges (min-transactions, window expiry, p95) are
//! table-tested; its sliding window and the p95 are in `guard/window.rs`.
//! [`Guard`] (in `guard/shared.rs`) is the shared handle the session (SES outcomes,
//! delays), the feedback reader (SES events) and the admin API (re-arm) use.
//!
//! Only SES-route upstream outcomes reach the guard: a client's own mistake
//! (syntax, bare LF, size, limits) never does, so one broken client cannot
//! roll back a migration. SES's per-message refusals (`MessageRejected` and
//! the like) are not failures of SES: they count as `rejected`, a ratio of
//! their own that holds only when at least `min-reject-clients` distinct
//! clients had messages refused, so one broken Postfix cannot trip it, and an
//! identity that refuses everyone can.

mod shared;
mod window;

use std::net::IpAddr;
use std::time::{Duration, Instant};

pub use self::shared::{Guard, SesAnswer, Snapshot, State};
use self::window::Window;
use crate::config::GuardConfig;

/// A rollback condition; its name is the `condition` label of `ses_relay_guard_trips_total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Condition {
    /// SES-route upstream failures over upstream outcomes.
    FailureRatio,
    /// p95 of the delivery delay.
    Delay,
    /// Permanent bounces over sends (SES events).
    BounceRatio,
    /// Complaints over sends (SES events).
    ComplaintRatio,
    /// SES answered `SendingPausedException` or `AccountSuspendedException`.
    SesPaused,
    /// Per-message refusals over upstream outcomes, from at least
    /// `min-reject-clients` distinct clients.
    RejectRatio,
}

impl Condition {
    /// Every condition.
    #[cfg(test)]
    pub const ALL: [Condition; 6] = [
        Condition::FailureRatio,
        Condition::Delay,
        Condition::BounceRatio,
        Condition::ComplaintRatio,
        Condition::SesPaused,
        Condition::RejectRatio,
    ];

    /// The metric label (the metrics name every label, so they can be
    /// registered at 0 before the first trip).
    pub fn as_str(self) -> &'static str {
        crate::metrics::GUARD_CONDITIONS[self as usize]
    }
}

/// An SES event that enters a ratio.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventKind {
    /// SES took a message for delivery (the ratios' denominator).
    Send,
    /// A permanent bounce.
    Bounce,
    /// A complaint.
    Complaint,
}

/// A condition that held, and why, in the words `GET /cutover` shows.
#[derive(Debug, Clone, PartialEq)]
pub struct Trip {
    /// Which condition.
    pub condition: Condition,
    /// E.g. `guard: failure ratio 0.31 > 0.05 over 5m (62 of 200)`.
    pub reason: String,
}

/// The thresholds, from `[guard]`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Thresholds {
    /// The sliding window.
    pub window: Duration,
    /// Volume below which nothing is judged.
    pub min_transactions: u64,
    /// Upper bound of the failure ratio.
    pub max_failure_ratio: f64,
    /// Upper bound of the delay's p95.
    pub max_delay: Duration,
    /// Upper bound of the permanent bounce ratio.
    pub max_bounce_ratio: f64,
    /// Upper bound of the complaint ratio.
    pub max_complaint_ratio: f64,
    /// Upper bound of the ratio of per-message refusals.
    pub max_reject_ratio: f64,
    /// Distinct clients whose messages were refused, below which the reject
    /// ratio holds not.
    pub min_reject_clients: u64,
}

impl From<&GuardConfig> for Thresholds {
    fn from(config: &GuardConfig) -> Self {
        Thresholds {
            window: config.window.0,
            min_transactions: config.min_transactions,
            max_failure_ratio: config.max_failure_ratio,
            max_delay: config.max_delay.0,
            max_bounce_ratio: config.max_bounce_ratio,
            max_complaint_ratio: config.max_complaint_ratio,
            max_reject_ratio: config.max_reject_ratio,
            min_reject_clients: config.min_reject_clients,
        }
    }
}

/// What the judge sees in the window now (status page, dashboard).
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Figures {
    /// SES-route upstream outcomes.
    pub outcomes: u64,
    /// Of which failures (neither acceptance nor a per-message refusal).
    pub failures: u64,
    /// Of which per-message refusals (`MessageRejected` and the like).
    pub rejected: u64,
    /// Distinct clients among the refused messages' (counted up to
    /// `min-reject-clients`).
    pub reject_clients: u64,
    /// Accepted messages with a parseable `Received:` date.
    pub delays: u64,
    /// Their p95 (nearest rank).
    pub delay_p95: Option<Duration>,
    /// SES Send events.
    pub sends: u64,
    /// Permanent bounce events.
    pub bounces: u64,
    /// Complaint events.
    pub complaints: u64,
}

fn ratio(part: u64, whole: u64) -> f64 {
    if whole == 0 {
        0.0
    } else {
        part as f64 / whole as f64
    }
}

/// `0.31`, `1.00`, `0.001`: two decimals at least, up to four, trailing zeros dropped.
pub fn format_ratio(value: f64) -> String {
    let text = format!("{value:.4}");
    let (whole, fraction) = text.split_once('.').unwrap_or((&text, ""));
    let mut fraction = fraction.trim_end_matches('0').to_string();
    while fraction.len() < 2 {
        fraction.push('0');
    }
    format!("{whole}.{fraction}")
}

/// A duration rounded to whole seconds, as humantime writes it (`5m`, `10m 3s`).
pub fn format_duration(value: Duration) -> String {
    let secs = value.as_secs() + u64::from(value.subsec_millis() >= 500);
    if secs == 0 && !value.is_zero() {
        return format!("{}ms", value.as_millis());
    }
    humantime::format_duration(Duration::from_secs(secs)).to_string()
}

/// The policy: observations in a sliding window (`guard/window.rs`), and the verdict.
///
/// Counters are kept per second of the window so a judgement costs O(1)
/// except the p95, which is only read from the delay histogram once enough
/// delays are over `max-delay` that it must exceed it (nearest rank: p95 > max
/// iff at least `n - ceil(0.95 n) + 1` samples are over max).
#[derive(Debug)]
pub struct Judge {
    thresholds: Thresholds,
    window: Window,
}

impl Judge {
    /// An empty window.
    pub fn new(thresholds: Thresholds) -> Judge {
        Judge {
            thresholds,
            window: Window::new(
                thresholds.window,
                thresholds.max_delay,
                usize::try_from(thresholds.min_reject_clients).unwrap_or(usize::MAX),
            ),
        }
    }

    /// Forgets everything (re-arm: the window restarts).
    pub fn restart(&mut self) {
        *self = Judge::new(self.thresholds);
    }

    /// One SES-route upstream outcome; `delay` when accepted with a known first-taken date.
    pub fn outcome(&mut self, now: Instant, accepted: bool, delay: Option<Duration>) {
        self.window.outcome(now, accepted, delay);
    }

    /// One SES-route message that SES refused for what it is
    /// (`MessageRejected` and the like), sent by `client` (the real client,
    /// behind PROXY).
    pub fn rejection(&mut self, now: Instant, client: IpAddr) {
        self.window.rejection(now, client);
    }

    /// One SES event.
    pub fn event(&mut self, now: Instant, kind: EventKind) {
        self.window.event(now, kind);
    }

    /// The window's figures at `now`.
    pub fn figures(&mut self, now: Instant) -> Figures {
        let counts = self.window.counts(now);
        Figures {
            outcomes: counts.outcomes,
            failures: counts.failures,
            rejected: counts.rejected,
            reject_clients: self.window.rejecting_clients(),
            delays: counts.delays,
            delay_p95: self.window.delay_p95(),
            sends: counts.sends,
            bounces: counts.bounces,
            complaints: counts.complaints,
        }
    }

    /// The first condition that holds at `now`, if any (failure ratio, reject
    /// ratio, delay, bounce ratio, complaint ratio, in that order). A ratio exactly at its
    /// bound holds not: the plan says "above".
    pub fn judge(&mut self, now: Instant) -> Option<Trip> {
        let c = self.window.counts(now);
        let t = self.thresholds;
        let over = format_duration(t.window);
        let outcomes = c.outcomes;
        if outcomes >= t.min_transactions && ratio(c.failures, outcomes) > t.max_failure_ratio {
            return Some(Trip {
                condition: Condition::FailureRatio,
                reason: format!(
                    "guard: failure ratio {} > {} over {over} ({} of {outcomes})",
                    format_ratio(ratio(c.failures, outcomes)),
                    format_ratio(t.max_failure_ratio),
                    c.failures
                ),
            });
        }
        let clients = self.window.rejecting_clients();
        if outcomes >= t.min_transactions
            && clients >= t.min_reject_clients
            && ratio(c.rejected, outcomes) > t.max_reject_ratio
        {
            return Some(Trip {
                condition: Condition::RejectRatio,
                reason: format!(
                    "guard: reject ratio {} > {} over {over} ({} of {outcomes}, from {clients} clients)",
                    format_ratio(ratio(c.rejected, outcomes)),
                    format_ratio(t.max_reject_ratio),
                    c.rejected
                ),
            });
        }
        let n = c.delays;
        // Nearest rank: the p95 is the ceil(0.95 n)-th smallest.
        let rank = (n * 95).div_ceil(100);
        if n >= t.min_transactions && n > 0 && c.delays_over > n - rank {
            let p95 = self.window.delay_p95().unwrap_or_default();
            return Some(Trip {
                condition: Condition::Delay,
                reason: format!(
                    "guard: delay p95 {} > {} over {over} ({n} messages)",
                    format_duration(p95),
                    format_duration(t.max_delay)
                ),
            });
        }
        if c.sends >= t.min_transactions {
            for (condition, name, count, max) in [
                (
                    Condition::BounceRatio,
                    "bounce",
                    c.bounces,
                    t.max_bounce_ratio,
                ),
                (
                    Condition::ComplaintRatio,
                    "complaint",
                    c.complaints,
                    t.max_complaint_ratio,
                ),
            ] {
                let value = ratio(count, c.sends);
                if value > max {
                    return Some(Trip {
                        condition,
                        reason: format!(
                            "guard: {name} ratio {} > {} over {over} ({count} of {} sends)",
                            format_ratio(value),
                            format_ratio(max),
                            c.sends
                        ),
                    });
                }
            }
        }
        None
    }
}

#[cfg(test)]
mod tests;

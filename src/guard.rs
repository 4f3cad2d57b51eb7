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
//! roll back a migration.

mod shared;
mod window;

use std::time::{Duration, Instant};

pub use self::shared::{Guard, Snapshot, State};
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
}

impl Condition {
    /// Every condition.
    #[cfg(test)]
    pub const ALL: [Condition; 5] = [
        Condition::FailureRatio,
        Condition::Delay,
        Condition::BounceRatio,
        Condition::ComplaintRatio,
        Condition::SesPaused,
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
        }
    }
}

/// What the judge sees in the window now (status page, dashboard).
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Figures {
    /// SES-route upstream outcomes.
    pub outcomes: u64,
    /// Of which not acceptance.
    pub failures: u64,
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
/// Counters are kept beside the queues so a judgement costs O(1) except the
/// p95, which is only computed once enough delays are over `max-delay` that
/// it must exceed it (nearest rank: p95 > max iff at least `n - ceil(0.95 n) + 1`
/// samples are over max).
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
            window: Window::new(thresholds.window, thresholds.max_delay),
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
            delays: counts.delays,
            delay_p95: self.window.delay_p95(),
            sends: counts.sends,
            bounces: counts.bounces,
            complaints: counts.complaints,
        }
    }

    /// The first condition that holds at `now`, if any (failure ratio, delay,
    /// bounce ratio, complaint ratio, in that order). A ratio exactly at its
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
mod tests {
    use super::*;

    #[test]
    fn each_condition_has_its_label() {
        let labels = Condition::ALL.map(Condition::as_str);
        assert_eq!(
            labels,
            [
                "failure-ratio",
                "delay",
                "bounce-ratio",
                "complaint-ratio",
                "ses-paused"
            ]
        );
    }

    fn thresholds() -> Thresholds {
        Thresholds {
            window: Duration::from_secs(300),
            min_transactions: 10,
            max_failure_ratio: 0.05,
            max_delay: Duration::from_secs(300),
            max_bounce_ratio: 0.05,
            max_complaint_ratio: 0.001,
        }
    }

    fn secs(n: u64) -> Duration {
        Duration::from_secs(n)
    }

    #[test]
    fn failure_ratio_waits_for_min_transactions_and_names_its_figures() {
        let start = Instant::now();
        let mut judge = Judge::new(thresholds());
        for _ in 0..9 {
            judge.outcome(start, false, None);
        }
        assert_eq!(judge.judge(start), None, "9 < min-transactions");
        judge.outcome(start, true, None);
        let trip = judge.judge(start).unwrap();
        assert_eq!(trip.condition, Condition::FailureRatio);
        assert_eq!(
            trip.reason,
            "guard: failure ratio 0.90 > 0.05 over 5m (9 of 10)"
        );
    }

    #[test]
    fn failure_ratio_at_the_bound_holds_not_above_it_does() {
        let start = Instant::now();
        let mut judge = Judge::new(Thresholds {
            min_transactions: 200,
            ..thresholds()
        });
        for i in 0..200 {
            judge.outcome(start, i >= 10, None);
        }
        assert_eq!(
            judge.judge(start),
            None,
            "10 of 200 = 0.05 is not above 0.05"
        );
        let mut judge = Judge::new(Thresholds {
            min_transactions: 200,
            ..thresholds()
        });
        for i in 0..200 {
            judge.outcome(start, i >= 62, None);
        }
        assert_eq!(
            judge.judge(start).unwrap().reason,
            "guard: failure ratio 0.31 > 0.05 over 5m (62 of 200)"
        );
    }

    #[test]
    fn window_expiry_drops_old_outcomes_exactly_at_the_window() {
        let start = Instant::now();
        let mut judge = Judge::new(thresholds());
        for _ in 0..10 {
            judge.outcome(start, false, None);
        }
        // At window - 1 s they still count; at the window they are gone.
        assert!(judge.figures(start + secs(299)).failures == 10);
        assert_eq!(judge.judge(start + secs(300)), None);
        let figures = judge.figures(start + secs(300));
        assert_eq!((figures.outcomes, figures.failures), (0, 0));
        // Half old failures, half new successes: only the new ones count.
        let mut judge = Judge::new(thresholds());
        for _ in 0..10 {
            judge.outcome(start, false, None);
        }
        for _ in 0..10 {
            judge.outcome(start + secs(200), true, None);
        }
        assert!(judge.judge(start + secs(299)).is_some());
        let mut judge = Judge::new(thresholds());
        for _ in 0..10 {
            judge.outcome(start, false, None);
        }
        for _ in 0..10 {
            judge.outcome(start + secs(200), true, None);
        }
        assert_eq!(judge.judge(start + secs(300)), None);
        assert_eq!(judge.figures(start + secs(300)).outcomes, 10);
    }

    #[test]
    fn delay_trips_when_the_p95_is_over_max_delay_and_not_before() {
        let start = Instant::now();
        let mut judge = Judge::new(Thresholds {
            min_transactions: 20,
            ..thresholds()
        });
        // 20 samples: the p95 is the 19th smallest. One slow message is not enough.
        for _ in 0..19 {
            judge.outcome(start, true, Some(secs(10)));
        }
        judge.outcome(start, true, Some(secs(600)));
        assert_eq!(judge.judge(start), None);
        assert_eq!(judge.figures(start).delay_p95, Some(secs(10)));
        // Two slow ones out of 21 reach the 20th rank.
        judge.outcome(start, true, Some(secs(600)));
        let trip = judge.judge(start).unwrap();
        assert_eq!(trip.condition, Condition::Delay);
        assert_eq!(
            trip.reason,
            "guard: delay p95 10m > 5m over 5m (21 messages)"
        );
        // Exactly max-delay is not over it.
        let mut judge = Judge::new(Thresholds {
            min_transactions: 1,
            ..thresholds()
        });
        judge.outcome(start, true, Some(secs(300)));
        assert_eq!(judge.judge(start), None);
        // Failures carry no delay; messages without a date are left out.
        judge.outcome(start, false, Some(secs(900)));
        judge.outcome(start, true, None);
        assert_eq!(judge.figures(start).delays, 1);
    }

    #[test]
    fn delay_needs_min_transactions_samples_and_expires() {
        let start = Instant::now();
        let mut judge = Judge::new(thresholds());
        for _ in 0..9 {
            judge.outcome(start, true, Some(secs(600)));
        }
        assert_eq!(judge.judge(start), None, "9 samples < 10");
        judge.outcome(start + secs(100), true, Some(secs(600)));
        assert!(judge.judge(start + secs(100)).is_some());
        let mut judge = Judge::new(thresholds());
        for _ in 0..10 {
            judge.outcome(start, true, Some(secs(600)));
        }
        assert_eq!(judge.judge(start + secs(300)), None);
        assert_eq!(judge.figures(start + secs(300)).delay_p95, None);
    }

    #[test]
    fn bounce_and_complaint_ratios_are_over_sends_from_min_transactions() {
        let start = Instant::now();
        let mut judge = Judge::new(Thresholds {
            min_transactions: 100,
            ..thresholds()
        });
        for _ in 0..10 {
            judge.event(start, EventKind::Bounce);
        }
        for _ in 0..99 {
            judge.event(start, EventKind::Send);
        }
        assert_eq!(judge.judge(start), None, "99 sends < 100");
        judge.event(start, EventKind::Send);
        let trip = judge.judge(start).unwrap();
        assert_eq!(trip.condition, Condition::BounceRatio);
        assert_eq!(
            trip.reason,
            "guard: bounce ratio 0.10 > 0.05 over 5m (10 of 100 sends)"
        );
        // 1 complaint in 1000 sends is the bound; 2 is above it.
        let mut judge = Judge::new(Thresholds {
            min_transactions: 100,
            ..thresholds()
        });
        for _ in 0..1000 {
            judge.event(start, EventKind::Send);
        }
        judge.event(start, EventKind::Complaint);
        assert_eq!(judge.judge(start), None);
        judge.event(start, EventKind::Complaint);
        assert_eq!(
            judge.judge(start).unwrap().reason,
            "guard: complaint ratio 0.002 > 0.001 over 5m (2 of 1000 sends)"
        );
        // Sends expire with the window like everything else.
        let figures = judge.figures(start + secs(300));
        assert_eq!((figures.sends, figures.complaints), (0, 0));
    }

    #[test]
    fn restart_empties_the_window() {
        let start = Instant::now();
        let mut judge = Judge::new(thresholds());
        for _ in 0..10 {
            judge.outcome(start, false, Some(secs(1)));
            judge.event(start, EventKind::Send);
        }
        judge.restart();
        assert_eq!(judge.figures(start), Figures::default());
    }

    #[test]
    fn ratios_and_durations_read_as_in_the_issue() {
        assert_eq!(format_ratio(0.31), "0.31");
        assert_eq!(format_ratio(0.05), "0.05");
        assert_eq!(format_ratio(1.0), "1.00");
        assert_eq!(format_ratio(0.001), "0.001");
        assert_eq!(format_ratio(2.0 / 3.0), "0.6667");
        assert_eq!(format_duration(secs(300)), "5m");
        assert_eq!(format_duration(Duration::from_millis(600_400)), "10m");
        assert_eq!(format_duration(Duration::from_millis(250)), "250ms");
    }
}

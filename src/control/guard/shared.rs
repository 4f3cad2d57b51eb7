//! The guard's shared side: one per relay, behind a mutex, fed by the
//! session (SES outcomes, delays), the feedback reader (SES events) and the
//! admin API (re-arm), and the trip's effect on the cutover.

use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use tokio::sync::watch;

use super::{Condition, EventKind, Figures, Judge, Thresholds, Trip};
use crate::config::GuardConfig;
use crate::control::cutover::{Change, Cutover, Source};
use crate::message::forward::UpstreamError;
use crate::message::forward::ses::SesCode;
use crate::message::route::Percent;

/// Armed (judging), tripped (judging stopped until an operator re-arms), or off.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    /// `guard.enabled = false`.
    Disabled,
    /// Judging.
    Armed,
    /// A condition held; an operator's `PUT /cutover` re-arms.
    Tripped,
}

/// The guard's state for the status page and `GET /cutover`.
#[derive(Debug, Clone, PartialEq)]
pub struct Snapshot {
    /// Armed, tripped or disabled.
    pub state: State,
    /// Whether a trip can move traffic (a `[legacy]` route exists).
    pub can_move_traffic: bool,
    /// The window's figures now.
    pub figures: Figures,
    /// The last trip's reason.
    pub last_trip: Option<String>,
    /// The thresholds.
    pub thresholds: Thresholds,
}

struct Inner {
    judge: Judge,
    state: State,
    last_trip: Option<String>,
    /// Operators' changes put in force by the cutover: each one re-arms.
    operator_changes: Option<watch::Receiver<u64>>,
}

/// What SES (or the way to it) answered for one SES-route message: the
/// evidence [`Guard::ses_answer`] judges.
#[derive(Debug, Clone, Copy)]
pub enum SesAnswer<'a> {
    /// Taken; the delay from the client's `Received:` date, when it had one.
    Accepted(Option<Duration>),
    /// Not taken.
    Failed(&'a UpstreamError),
}

/// The shared guard: one per relay, holding the cutover it acts through.
pub struct Guard {
    inner: Mutex<Inner>,
    fallback_percent: Percent,
    can_move_traffic: bool,
    cutover: Option<Cutover>,
}

impl Guard {
    /// A guard that never judges (`guard.enabled = false`, tests).
    pub fn disabled() -> Guard {
        Guard {
            inner: Mutex::new(Inner {
                judge: Judge::new(Thresholds::from(&GuardConfig::default())),
                state: State::Disabled,
                last_trip: None,
                operator_changes: None,
            }),
            fallback_percent: Percent::ZERO,
            can_move_traffic: false,
            cutover: None,
        }
    }

    /// From `[guard]`, acting through `cutover`; `can_move_traffic` when a
    /// `[legacy]` route exists. Tripped from the start when the value in
    /// force came from its trip (a restart keeps the guard's percentage and
    /// its alert until an operator acts).
    pub fn new(config: &GuardConfig, cutover: Cutover, can_move_traffic: bool) -> Guard {
        let status = cutover.status();
        let tripped = config.enabled && status.source == Source::Guard;
        Guard {
            inner: Mutex::new(Inner {
                judge: Judge::new(Thresholds::from(config)),
                state: match (config.enabled, tripped) {
                    (false, _) => State::Disabled,
                    (true, false) => State::Armed,
                    (true, true) => State::Tripped,
                },
                last_trip: status.reason.filter(|_| tripped),
                operator_changes: Some(cutover.operator_changes()),
            }),
            fallback_percent: Percent::new(config.fallback_percent).unwrap_or(Percent::ZERO),
            can_move_traffic,
            cutover: Some(cutover),
        }
        .with_trip_metric(tripped)
    }

    fn with_trip_metric(self, tripped: bool) -> Guard {
        if tripped {
            crate::metrics::guard_tripped(true);
        }
        self
    }

    /// The guard, re-armed first if an operator changed the cutover since it last looked.
    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        let mut inner = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        let changed = inner
            .operator_changes
            .as_mut()
            .is_some_and(|changes| changes.has_changed().unwrap_or(false));
        if changed {
            if let Some(changes) = inner.operator_changes.as_mut() {
                changes.borrow_and_update();
            }
            rearm(&mut inner);
        }
        inner
    }

    /// Records, then judges when armed; a trip returned is to be acted on.
    fn observe(&self, record: impl FnOnce(&mut Judge, Instant)) -> Option<Trip> {
        let mut inner = self.lock();
        if inner.state == State::Disabled {
            return None;
        }
        let now = Instant::now();
        record(&mut inner.judge, now);
        if inner.state != State::Armed {
            return None;
        }
        let trip = inner.judge.judge(now)?;
        inner.state = State::Tripped;
        inner.last_trip = Some(trip.reason.clone());
        Some(trip)
    }

    /// What SES (or the way to it) answered for one SES-route message from
    /// `client` (the real one, behind PROXY): recorded and judged, and a
    /// trip acted on at once, so the next transaction already takes the new
    /// route. SES's refusal of one message for what it is counts as
    /// `rejected` for `client`, never as a failure; an account stop trips at
    /// once. Returns the trip acted on.
    pub fn ses_answer(&self, answer: SesAnswer<'_>, client: IpAddr) -> Option<Trip> {
        let trip = match answer {
            SesAnswer::Accepted(delay) => {
                self.observe(|judge, now| judge.outcome(now, true, delay))
            }
            SesAnswer::Failed(err) => match err.ses_code() {
                Some(code) if code.refuses_the_message() => {
                    self.observe(|judge, now| judge.rejection(now, client))
                }
                Some(code) if code.stops_the_account() => {
                    let stop = self.stopped(code, err.label());
                    let counted = self.observe(|judge, now| judge.outcome(now, false, None));
                    stop.or(counted)
                }
                _ => self.observe(|judge, now| judge.outcome(now, false, None)),
            },
        };
        self.act_on(trip)
    }

    /// The sliding window (the feedback reader remembers event keys this long).
    pub fn window(&self) -> Duration {
        self.lock().judge.thresholds.window
    }

    /// One SES event from the feedback queue: recorded, judged, and a trip
    /// acted on at once. Returns the trip acted on.
    pub fn ses_event(&self, kind: EventKind) -> Option<Trip> {
        let trip = self.observe(|judge, now| judge.event(now, kind));
        self.act_on(trip)
    }

    fn act_on(&self, trip: Option<Trip>) -> Option<Trip> {
        if let Some(trip) = &trip {
            self.enforce(trip);
        }
        trip
    }

    /// SES said the account cannot send (`SendingPausedException`,
    /// `AccountSuspendedException`, as `name`): trips at once, whatever the volume.
    fn stopped(&self, code: SesCode, name: &str) -> Option<Trip> {
        let mut inner = self.lock();
        if inner.state != State::Armed {
            return None;
        }
        let what = if code == SesCode::AccountSuspended {
            "account suspended"
        } else {
            "sending paused"
        };
        let trip = Trip {
            condition: Condition::SesPaused,
            reason: format!("guard: SES {what} ({name})"),
        };
        inner.state = State::Tripped;
        inner.last_trip = Some(trip.reason.clone());
        Some(trip)
    }

    /// Whether the guard is tripped now (after following operators' changes).
    pub fn state(&self) -> State {
        self.lock().state
    }

    /// State and figures now.
    pub fn snapshot(&self) -> Snapshot {
        let mut inner = self.lock();
        let figures = inner.judge.figures(Instant::now());
        Snapshot {
            state: inner.state,
            can_move_traffic: self.can_move_traffic,
            figures,
            last_trip: inner.last_trip.clone(),
            thresholds: inner.judge.thresholds,
        }
    }

    /// Acts on a trip: counts it, logs it, and (with a legacy route) lowers the
    /// SES share to `fallback-percent` through the cutover's one entry point:
    /// in force for the next transaction at once, then written to the store
    /// until it has it. Never raises the share.
    fn enforce(&self, trip: &Trip) {
        crate::metrics::guard_trip(trip.condition.as_str());
        crate::metrics::guard_tripped(true);
        let Some(cutover) = self.cutover.as_ref().filter(|_| self.can_move_traffic) else {
            tracing::error!(
                audit = "guard",
                condition = trip.condition.as_str(),
                reason = %trip.reason,
                "rollback guard tripped; no [legacy] route, so it can only alert"
            );
            return;
        };
        let percent = cutover.share().get().min(self.fallback_percent);
        tracing::error!(
            audit = "guard",
            condition = trip.condition.as_str(),
            reason = %trip.reason,
            to = percent.as_f64(),
            "rollback guard tripped; moving traffic to legacy"
        );
        let writing = cutover.change(Change {
            percent,
            reason: trip.reason.clone(),
            by: Source::Guard,
        });
        // In force here already; the write to the store goes on by itself.
        match tokio::runtime::Handle::try_current() {
            Ok(runtime) => drop(runtime.spawn(async move {
                if let Err(err) = writing.await {
                    tracing::error!(error = %err, "rollback guard: cutover change not saved");
                }
            })),
            Err(_) => tracing::error!("rollback guard: no runtime, the trip holds here only"),
        }
    }
}

/// An operator set the percentage: judging starts again on an empty window.
fn rearm(inner: &mut Inner) {
    if inner.state == State::Disabled {
        return;
    }
    let was = inner.state;
    inner.state = State::Armed;
    inner.judge.restart();
    crate::metrics::guard_tripped(false);
    if was == State::Tripped {
        tracing::info!(
            audit = "guard",
            "rollback guard re-armed by an operator's change"
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn guard_trips_once_until_rearmed_and_ses_stops_trip_at_once() {
        let config = GuardConfig {
            enabled: true,
            min_transactions: 3,
            ..GuardConfig::default()
        };
        let cutover = Cutover::load(std::path::Path::new(""), 50.0).unwrap();
        let guard = Guard::new(&config, cutover.clone(), true);
        let client = IpAddr::from([192, 0, 2, 1]);
        let down = UpstreamError::transport(crate::message::forward::Transport::Network, "refused");
        let failed = || guard.ses_answer(SesAnswer::Failed(&down), client);
        assert!(failed().is_none());
        assert!(failed().is_none());
        assert!(failed().is_some());
        assert_eq!(
            cutover.status().ses_percent,
            0.0,
            "the trip is in force when ses_answer returns"
        );
        assert!(failed().is_none(), "already tripped");
        let paused = UpstreamError::ses("SendingPausedException", "paused");
        assert!(
            guard
                .ses_answer(SesAnswer::Failed(&paused), client)
                .is_none()
        );
        assert_eq!(guard.snapshot().state, State::Tripped);
        // An operator's change re-arms it.
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        rt.block_on(cutover.change(Change {
            percent: Percent::new(40.0).unwrap(),
            reason: "operator".into(),
            by: Source::Api,
        }))
        .unwrap();
        assert_eq!(guard.snapshot().state, State::Armed);
        assert_eq!(guard.snapshot().figures.outcomes, 0, "window restarted");
        let suspended = UpstreamError::ses("AccountSuspendedException", "suspended");
        let trip = guard
            .ses_answer(SesAnswer::Failed(&suspended), client)
            .unwrap();
        assert_eq!(trip.condition, Condition::SesPaused);
        assert_eq!(
            trip.reason,
            "guard: SES account suspended (AccountSuspendedException)"
        );
        let off = Guard::disabled();
        for _ in 0..10 {
            assert!(off.ses_answer(SesAnswer::Failed(&down), client).is_none());
        }
        assert!(off.ses_answer(SesAnswer::Failed(&paused), client).is_none());
    }

    #[test]
    fn only_an_account_stop_trips_at_once() {
        let config = GuardConfig {
            enabled: true,
            min_transactions: 3,
            ..GuardConfig::default()
        };
        let cutover = Cutover::load(std::path::Path::new(""), 50.0).unwrap();
        let guard = Guard::new(&config, cutover, true);
        let client = IpAddr::from([192, 0, 2, 1]);
        // An SES code that is neither a refusal nor a stop is one failure among others.
        let throttled = UpstreamError::ses("TooManyRequestsException", "slow down");
        assert!(
            guard
                .ses_answer(SesAnswer::Failed(&throttled), client)
                .is_none()
        );
        assert_eq!(guard.snapshot().state, State::Armed);
        assert_eq!(guard.snapshot().figures.failures, 1);
        let paused = UpstreamError::ses("SendingPausedException", "paused");
        let trip = guard.ses_answer(SesAnswer::Failed(&paused), client);
        assert_eq!(
            trip.map(|t| t.reason),
            Some("guard: SES sending paused (SendingPausedException)".to_string())
        );
    }

    #[test]
    fn ses_events_trip_and_move_traffic_and_the_window_is_the_configured_one() {
        let config = GuardConfig {
            enabled: true,
            min_transactions: 10,
            ..GuardConfig::default()
        };
        let cutover = Cutover::load(std::path::Path::new(""), 50.0).unwrap();
        let guard = Guard::new(&config, cutover.clone(), true);
        assert_eq!(
            guard.window(),
            config.window.0,
            "the feedback reader's memory"
        );
        for _ in 0..10 {
            assert!(guard.ses_event(EventKind::Send).is_none());
        }
        let trip = guard.ses_event(EventKind::Bounce);
        assert_eq!(trip.map(|t| t.condition), Some(Condition::BounceRatio));
        assert_eq!(guard.state(), State::Tripped);
        assert_eq!(
            cutover.status().ses_percent,
            0.0,
            "moved to fallback-percent"
        );
    }

    #[test]
    fn a_refused_message_is_a_rejection_never_a_failure() {
        let config = GuardConfig {
            enabled: true,
            min_transactions: 3,
            ..GuardConfig::default()
        };
        let cutover = Cutover::load(std::path::Path::new(""), 50.0).unwrap();
        let guard = Guard::new(&config, cutover, true);
        let rejected = UpstreamError::ses("MessageRejected", "Email address is not verified.");
        for _ in 0..5 {
            let one_client = IpAddr::from([192, 0, 2, 1]);
            assert!(
                guard
                    .ses_answer(SesAnswer::Failed(&rejected), one_client)
                    .is_none()
            );
        }
        let figures = guard.snapshot().figures;
        assert_eq!((figures.failures, figures.rejected), (0, 5));
        assert_eq!(
            guard.snapshot().state,
            State::Armed,
            "one client cannot trip it"
        );
        let another = IpAddr::from([192, 0, 2, 2]);
        let trip = guard.ses_answer(SesAnswer::Failed(&rejected), another);
        assert_eq!(trip.map(|t| t.condition), Some(Condition::RejectRatio));
    }
}

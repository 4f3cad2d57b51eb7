//! Log lines an outsider can cause, throttled: a scanner, a misconfigured
//! fleet, a descriptor shortage or an upstream outage must not flood the
//! journal (each of these once wrote one line per event, hundreds a second).
//! The metrics still count every event; the log keeps a burst per window and
//! one summary line saying how many it left out.

use std::sync::Mutex;
use std::time::{Duration, Instant};

/// The first summary of a flood comes this long after its first line left
/// out: soon enough for the operator watching, late enough to count a burst.
const FIRST_SUMMARY: Duration = Duration::from_secs(1);

/// At most `burst` lines per `window` of one kind of line. Lines left out
/// are counted, and one WARN line says how many (`suppressed=N`): a second
/// after the first one left out, then at most once per window while the
/// flood lasts (a timer, so a flood that stops is still accounted for), and
/// before the next line let through.
#[derive(Debug)]
pub struct LogThrottle {
    what: &'static str,
    burst: u32,
    window: Duration,
    state: Mutex<ThrottleState>,
}

#[derive(Debug)]
struct ThrottleState {
    started: Option<Instant>,
    logged: u32,
    suppressed: u64,
    /// A timer is set to write the summary.
    timer: bool,
    last_summary: Option<Instant>,
}

/// What [`LogThrottle::admit_at`] decided.
#[derive(Debug, PartialEq, Eq)]
struct Admission {
    /// The line may be written.
    admitted: bool,
    /// A summary of this many lines left out is due first.
    summary: u64,
    /// Set a timer to write the summary after this long.
    timer: Option<Duration>,
}

impl LogThrottle {
    /// At most `burst` lines per `window` of the kind `what` (the summary
    /// line names it: usually the throttled line's message).
    pub const fn new(what: &'static str, burst: u32, window: Duration) -> LogThrottle {
        LogThrottle {
            what,
            burst,
            window,
            state: Mutex::new(ThrottleState {
                started: None,
                logged: 0,
                suppressed: 0,
                timer: false,
                last_summary: None,
            }),
        }
    }

    /// The kind of line this throttle admits (the line's own text).
    pub const fn what(&self) -> &'static str {
        self.what
    }

    /// Whether this line may be written now. Writes a due summary line first.
    pub fn admit(&'static self) -> bool {
        let admission = self.admit_at(Instant::now());
        self.summarize(admission.summary);
        if let Some(delay) = admission.timer {
            // Outside a runtime the next line let through writes the summary.
            if let Ok(runtime) = tokio::runtime::Handle::try_current() {
                runtime.spawn(async move {
                    tokio::time::sleep(delay).await;
                    self.summarize(self.take_at(Instant::now()));
                });
            }
        }
        admission.admitted
    }

    fn admit_at(&self, now: Instant) -> Admission {
        let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        let expired = state
            .started
            .is_none_or(|started| now.duration_since(started) >= self.window);
        if expired {
            state.started = Some(now);
            state.logged = 0;
        }
        if state.logged < self.burst {
            state.logged += 1;
            let summary = std::mem::take(&mut state.suppressed);
            if summary > 0 {
                state.last_summary = Some(now);
            }
            return Admission {
                admitted: true,
                summary,
                timer: None,
            };
        }
        state.suppressed += 1;
        let timer = (!std::mem::replace(&mut state.timer, true)).then(|| {
            let next = state.last_summary.map_or(Duration::ZERO, |last| {
                (last + self.window).saturating_duration_since(now)
            });
            next.max(FIRST_SUMMARY)
        });
        Admission {
            admitted: false,
            summary: 0,
            timer,
        }
    }

    /// The timer's end: takes the count of lines left out.
    fn take_at(&self, now: Instant) -> u64 {
        let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        state.timer = false;
        let suppressed = std::mem::take(&mut state.suppressed);
        if suppressed > 0 {
            state.last_summary = Some(now);
        }
        suppressed
    }

    fn summarize(&self, suppressed: u64) {
        if suppressed > 0 {
            tracing::warn!(suppressed, "suppressed {suppressed} more: {}", self.what);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn admission(admitted: bool, summary: u64, timer: Option<u64>) -> Admission {
        Admission {
            admitted,
            summary,
            timer: timer.map(Duration::from_secs),
        }
    }

    #[test]
    fn a_burst_goes_through_then_the_rest_is_counted_once() {
        let throttle = LogThrottle::new("test", 2, Duration::from_secs(10));
        let t0 = Instant::now();
        let at = |s: u64| t0 + Duration::from_secs(s);
        assert_eq!(throttle.admit_at(t0), admission(true, 0, None));
        assert_eq!(throttle.admit_at(t0), admission(true, 0, None));
        // The first line left out sets the timer (a second), the others only count.
        assert_eq!(throttle.admit_at(t0), admission(false, 0, Some(1)));
        for _ in 0..99 {
            assert_eq!(throttle.admit_at(at(0)), admission(false, 0, None));
        }
        assert_eq!(throttle.take_at(at(1)), 100);
        // Still flooding: the next summary a window after the last one.
        assert_eq!(throttle.admit_at(at(2)), admission(false, 0, Some(9)));
        assert_eq!(throttle.admit_at(at(3)), admission(false, 0, None));
        // A new window: the count so far comes before the line let through,
        // and the timer then finds nothing to say.
        assert_eq!(throttle.admit_at(at(10)), admission(true, 2, None));
        assert_eq!(throttle.take_at(at(11)), 0);
        assert_eq!(throttle.admit_at(at(11)), admission(true, 0, None));
        assert_eq!(throttle.admit_at(at(12)), admission(false, 0, Some(8)));
    }

    #[test]
    fn a_quiet_throttle_lets_every_line_through() {
        let throttle = LogThrottle::new("test", 1, Duration::from_secs(10));
        let t0 = Instant::now();
        for window in 0..5 {
            let now = t0 + Duration::from_secs(10 * window);
            assert_eq!(throttle.admit_at(now), admission(true, 0, None));
        }
    }
}

//! Log lines an outsider can cause, throttled: a scanner, a misconfigured
//! fleet, a descriptor shortage or an upstream outage must not flood the
//! journal (each of these once wrote one line per event, hundreds a second).
//! The metrics still count every event; the log keeps a burst per window and
//! one summary line saying how many it left out.

use std::sync::Mutex;
use std::time::{Duration, Instant};

/// At most `burst` lines per `window` of one kind of line. When a window
/// left lines out, one WARN line says how many (`suppressed=N`): at the end
/// of the window (a timer, so a flood that stops is still accounted for) or
/// at the next line of its kind, whichever comes first.
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
    /// A timer is set to write the summary at the end of this window.
    timer: bool,
}

/// What [`LogThrottle::admit_at`] decided.
#[derive(Debug, PartialEq, Eq)]
struct Admission {
    /// The line may be written.
    admitted: bool,
    /// A summary of this many lines left out is due first.
    summary: u64,
    /// Set a timer for the end of the window.
    arm_timer: bool,
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
            }),
        }
    }

    /// Whether this line may be written now. Writes a due summary line first.
    pub fn admit(&'static self) -> bool {
        let admission = self.admit_at(Instant::now());
        self.summarize(admission.summary);
        if admission.arm_timer {
            self.arm_timer();
        }
        admission.admitted
    }

    fn admit_at(&self, now: Instant) -> Admission {
        let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        let mut summary = 0;
        let expired = state
            .started
            .is_none_or(|started| now.duration_since(started) >= self.window);
        if expired {
            summary = std::mem::take(&mut state.suppressed);
            state.started = Some(now);
            state.logged = 0;
            state.timer = false;
        }
        if state.logged < self.burst {
            state.logged += 1;
            return Admission {
                admitted: true,
                summary,
                arm_timer: false,
            };
        }
        state.suppressed += 1;
        let arm_timer = !std::mem::replace(&mut state.timer, true);
        Admission {
            admitted: false,
            summary,
            arm_timer,
        }
    }

    /// Takes the count of lines left out in a window that has ended.
    fn take_expired(&self, now: Instant) -> u64 {
        let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        let ended = state
            .started
            .is_some_and(|started| now.duration_since(started) >= self.window);
        if ended {
            state.timer = false;
            std::mem::take(&mut state.suppressed)
        } else {
            0
        }
    }

    /// At the end of the window, the summary; only inside a tokio runtime
    /// (outside one, the next line of the kind writes it).
    fn arm_timer(&'static self) {
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return;
        };
        let ends = {
            let state = self.state.lock().unwrap_or_else(|p| p.into_inner());
            state.started.map_or(Instant::now(), |s| s + self.window)
        };
        runtime.spawn(async move {
            tokio::time::sleep_until(ends.into()).await;
            self.summarize(self.take_expired(Instant::now().max(ends)));
        });
    }

    fn summarize(&self, suppressed: u64) {
        if suppressed > 0 {
            tracing::warn!(
                suppressed,
                "suppressed {suppressed} more in {}: {}",
                humantime::format_duration(self.window),
                self.what
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn admitted(admitted: bool, summary: u64, arm_timer: bool) -> Admission {
        Admission {
            admitted,
            summary,
            arm_timer,
        }
    }

    #[test]
    fn a_burst_goes_through_then_the_rest_is_counted_once() {
        let throttle = LogThrottle::new("test", 2, Duration::from_secs(10));
        let t0 = Instant::now();
        assert_eq!(throttle.admit_at(t0), admitted(true, 0, false));
        assert_eq!(throttle.admit_at(t0), admitted(true, 0, false));
        // The first line left out sets the timer, the others only count.
        assert_eq!(throttle.admit_at(t0), admitted(false, 0, true));
        for _ in 0..99 {
            assert_eq!(
                throttle.admit_at(t0 + Duration::from_secs(1)),
                admitted(false, 0, false)
            );
        }
        // Before the window ends the timer finds nothing to say.
        assert_eq!(throttle.take_expired(t0 + Duration::from_secs(9)), 0);
        // A new window: the summary of the last one comes first.
        assert_eq!(
            throttle.admit_at(t0 + Duration::from_secs(10)),
            admitted(true, 100, false)
        );
        assert_eq!(
            throttle.admit_at(t0 + Duration::from_secs(11)),
            admitted(true, 0, false)
        );
    }

    #[test]
    fn the_timer_takes_the_count_and_the_next_line_does_not_repeat_it() {
        let throttle = LogThrottle::new("test", 1, Duration::from_secs(10));
        let t0 = Instant::now();
        assert!(throttle.admit_at(t0).admitted);
        for _ in 0..5 {
            assert!(!throttle.admit_at(t0).admitted);
        }
        assert_eq!(throttle.take_expired(t0 + Duration::from_secs(10)), 5);
        assert_eq!(throttle.take_expired(t0 + Duration::from_secs(10)), 0);
        assert_eq!(
            throttle.admit_at(t0 + Duration::from_secs(12)),
            admitted(true, 0, false)
        );
        // A second flood in the new window sets a new timer.
        assert_eq!(
            throttle.admit_at(t0 + Duration::from_secs(12)),
            admitted(false, 0, true)
        );
    }
}

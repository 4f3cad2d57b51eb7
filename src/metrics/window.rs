//! The status page's view of the last five minutes, per route: transactions
//! by disposition, the time spent upstream (p50, p99) and the error codes of
//! the transactions that were not delivered.
//!
//! One slot per minute, reused round-robin (a slot whose minute has passed
//! is cleared when its minute comes again). Each slot is bounded whatever
//! the traffic and whatever an upstream answers: two histograms of fixed
//! size, and at most [`MAX_CODES`] error codes of at most [`MAX_CODE_LEN`]
//! bytes, the rest counted under [`OTHER_CODE`] (one entry per route).

use std::collections::HashMap;
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use hdrhistogram::Histogram;

use crate::message::disposition::Disposition;
use crate::message::route::Route;

/// Transactions of the last five minutes, per route, for the status page.
#[derive(Debug, Default)]
pub struct RecentWindow {
    slots: Mutex<[Minute; SLOTS]>,
}

/// One minute's figures, indexed by route.
#[derive(Debug, Default)]
struct Minute {
    /// Minute since the epoch this slot counts.
    minute: u64,
    /// `[route][disposition]`.
    counts: [[u64; 4]; 2],
    /// Time spent upstream in microseconds; made on the minute's first sample,
    /// so a quiet route costs nothing.
    latency: [Option<Histogram<u32>>; 2],
    /// `(route, code, count)`: at most [`MAX_CODES`] codes, plus one
    /// [`OTHER_CODE`] entry per route for the rest.
    codes: Vec<(Route, Box<str>, u64)>,
}

/// The window plus the minute being counted.
const SLOTS: usize = WINDOW_MINUTES as usize + 1;

const WINDOW_MINUTES: u64 = 5;

/// Distinct error codes one minute keeps; SES names a few dozen codes and an
/// SMTP upstream a few reply codes, but whatever it invents stays bounded.
pub const MAX_CODES: usize = 16;

/// Longest error code kept, in bytes (SES's longest is 34).
pub const MAX_CODE_LEN: usize = 64;

/// Where codes past `MAX_CODES` in one minute are counted.
pub const OTHER_CODE: &str = "other";

/// Upper bound of the latency histograms: 10 minutes, in microseconds
/// (longer waits are counted as 10 minutes).
const HIGHEST_MICROS: u64 = 600_000_000;

/// Two significant figures: 1 % resolution is plenty for a person, and
/// keeps one histogram near 12 KiB.
const LATENCY_SIGFIG: u8 = 2;

fn route_index(route: Route) -> usize {
    match route {
        Route::Ses => 0,
        Route::Legacy => 1,
    }
}

/// Totals of one route over the window.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct RouteTotals {
    /// Accepted upstream.
    pub delivered: u64,
    /// Answered 4xx.
    pub deferred: u64,
    /// Answered 5xx.
    pub rejected: u64,
    /// Refused for the client's own mistake; not in the success ratio.
    pub refused: u64,
}

impl RouteTotals {
    /// delivered / (delivered + deferred + rejected), or None without such traffic:
    /// refused transactions say nothing about the route.
    pub fn success_ratio(&self) -> Option<f64> {
        let all = self.delivered + self.deferred + self.rejected;
        (all > 0).then(|| self.delivered as f64 / all as f64)
    }
}

/// Time spent upstream by one route over the window.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Latency {
    /// Messages that went upstream.
    pub samples: u64,
    /// Median.
    pub p50: Duration,
    /// 99th percentile.
    pub p99: Duration,
}

/// One error code's count over the window.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ErrorCount {
    /// The route that failed.
    pub route: Route,
    /// SES's error code (`MessageRejected`, or the relay's own `timeout`),
    /// else the SMTP reply code with its enhanced status (`451 4.4.1`).
    pub code: String,
    /// Transactions that ended with it.
    pub count: u64,
}

fn minute_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() / 60)
}

fn latency_histogram() -> Histogram<u32> {
    Histogram::new_with_bounds(1, HIGHEST_MICROS, LATENCY_SIGFIG)
        .expect("constant histogram bounds are valid")
}

/// `text` cut to at most `max` bytes, on a character boundary: what the
/// status page keeps of anything an outsider wrote is bounded.
pub(super) fn cut(text: &str, max: usize) -> &str {
    if text.len() <= max {
        return text;
    }
    let mut end = max;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    &text[..end]
}

impl Minute {
    fn in_window(&self, now: u64) -> bool {
        self.minute <= now && self.minute + WINDOW_MINUTES > now
    }
}

impl RecentWindow {
    /// The slot of `minute`, cleared first if it still holds an older minute.
    fn with_slot(&self, minute: u64, update: impl FnOnce(&mut Minute)) {
        let mut slots = self.slots.lock().unwrap_or_else(|p| p.into_inner());
        let slot = &mut slots[(minute % SLOTS as u64) as usize];
        if slot.minute != minute {
            *slot = Minute {
                minute,
                ..Minute::default()
            };
        }
        update(slot);
    }

    /// Counts one transaction now.
    pub fn record(&self, route: Route, result: Disposition) {
        self.record_at(minute_now(), route, result);
    }

    fn record_at(&self, minute: u64, route: Route, result: Disposition) {
        self.with_slot(minute, |slot| {
            slot.counts[route_index(route)][result as usize] += 1;
        });
    }

    /// Counts the time one message spent upstream now.
    pub fn upstream_time(&self, route: Route, spent: Duration) {
        self.upstream_time_at(minute_now(), route, spent);
    }

    fn upstream_time_at(&self, minute: u64, route: Route, spent: Duration) {
        let micros = u64::try_from(spent.as_micros()).unwrap_or(u64::MAX);
        self.with_slot(minute, |slot| {
            slot.latency[route_index(route)]
                .get_or_insert_with(latency_histogram)
                .saturating_record(micros.clamp(1, HIGHEST_MICROS));
        });
    }

    /// Counts one transaction of `route` that ended with `code` now.
    pub fn error(&self, route: Route, code: &str) {
        self.error_at(minute_now(), route, code);
    }

    fn error_at(&self, minute: u64, route: Route, code: &str) {
        let code = cut(code, MAX_CODE_LEN);
        self.with_slot(minute, |slot| {
            let at = |codes: &[(Route, Box<str>, u64)], code: &str| {
                codes
                    .iter()
                    .position(|(r, c, _)| *r == route && &**c == code)
            };
            let index = match at(&slot.codes, code) {
                Some(index) => index,
                None => {
                    let kept = slot.codes.iter().filter(|e| &*e.1 != OTHER_CODE).count();
                    let code = if kept < MAX_CODES { code } else { OTHER_CODE };
                    at(&slot.codes, code).unwrap_or_else(|| {
                        slot.codes.push((route, code.into(), 0));
                        slot.codes.len() - 1
                    })
                }
            };
            slot.codes[index].2 += 1;
        });
    }

    /// Totals for `route` over the last five minutes.
    pub fn totals(&self, route: Route) -> RouteTotals {
        self.totals_at(minute_now(), route)
    }

    fn totals_at(&self, minute: u64, route: Route) -> RouteTotals {
        let slots = self.slots.lock().unwrap_or_else(|p| p.into_inner());
        let mut by = [0u64; 4];
        for slot in slots.iter().filter(|s| s.in_window(minute)) {
            for (total, n) in by.iter_mut().zip(slot.counts[route_index(route)]) {
                *total += n;
            }
        }
        RouteTotals {
            delivered: by[Disposition::Delivered as usize],
            deferred: by[Disposition::Deferred as usize],
            rejected: by[Disposition::Rejected as usize],
            refused: by[Disposition::Refused as usize],
        }
    }

    /// Time spent upstream by `route` over the last five minutes; None when
    /// no message went there.
    pub fn latency(&self, route: Route) -> Option<Latency> {
        self.latency_at(minute_now(), route)
    }

    fn latency_at(&self, minute: u64, route: Route) -> Option<Latency> {
        let slots = self.slots.lock().unwrap_or_else(|p| p.into_inner());
        let mut all = latency_histogram();
        for slot in slots.iter().filter(|s| s.in_window(minute)) {
            if let Some(histogram) = &slot.latency[route_index(route)] {
                // Same bounds on both sides: adding cannot fail.
                let _ = all.add(histogram);
            }
        }
        (!all.is_empty()).then(|| Latency {
            samples: all.len(),
            p50: Duration::from_micros(all.value_at_quantile(0.5)),
            p99: Duration::from_micros(all.value_at_quantile(0.99)),
        })
    }

    /// The `n` most frequent error codes of the last five minutes, the most
    /// frequent first (ties by route, then code, so the order is stable).
    pub fn top_errors(&self, n: usize) -> Vec<ErrorCount> {
        self.top_errors_at(minute_now(), n)
    }

    fn top_errors_at(&self, minute: u64, n: usize) -> Vec<ErrorCount> {
        let slots = self.slots.lock().unwrap_or_else(|p| p.into_inner());
        let mut sums: HashMap<(Route, &str), u64> = HashMap::new();
        for slot in slots.iter().filter(|s| s.in_window(minute)) {
            for (route, code, count) in &slot.codes {
                *sums.entry((*route, &**code)).or_default() += count;
            }
        }
        let mut top: Vec<ErrorCount> = sums
            .into_iter()
            .map(|((route, code), count)| ErrorCount {
                route,
                code: code.to_string(),
                count,
            })
            .collect();
        top.sort_by(|a, b| {
            b.count
                .cmp(&a.count)
                .then(route_index(a.route).cmp(&route_index(b.route)))
                .then(a.code.cmp(&b.code))
        });
        top.truncate(n);
        top
    }
}

/// The process-wide window.
pub fn recent() -> &'static RecentWindow {
    static RECENT: OnceLock<RecentWindow> = OnceLock::new();
    RECENT.get_or_init(RecentWindow::default)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn window_keeps_five_minutes() {
        let window = RecentWindow::default();
        window.record_at(100, Route::Ses, Disposition::Delivered);
        window.record_at(102, Route::Ses, Disposition::Deferred);
        window.record_at(104, Route::Ses, Disposition::Delivered);
        window.record_at(104, Route::Legacy, Disposition::Rejected);
        let at_104 = window.totals_at(104, Route::Ses);
        assert_eq!((at_104.delivered, at_104.deferred), (2, 1));
        assert_eq!(at_104.success_ratio(), Some(2.0 / 3.0));
        // Minute 100 has left the window at 105.
        assert_eq!(window.totals_at(105, Route::Ses).delivered, 1);
        assert_eq!(window.totals_at(104, Route::Legacy).rejected, 1);
        // Minute 100's slot, reused at 106, starts from zero (102 and 104 remain).
        window.record_at(106, Route::Ses, Disposition::Deferred);
        let at_106 = window.totals_at(106, Route::Ses);
        assert_eq!((at_106.delivered, at_106.deferred), (1, 2));
        assert_eq!(RouteTotals::default().success_ratio(), None);
    }

    #[test]
    fn refused_stays_out_of_the_success_ratio() {
        let window = RecentWindow::default();
        window.record_at(200, Route::Ses, Disposition::Delivered);
        window.record_at(200, Route::Ses, Disposition::Refused);
        window.record_at(200, Route::Ses, Disposition::Refused);
        let totals = window.totals_at(200, Route::Ses);
        assert_eq!(
            (totals.delivered, totals.refused, totals.rejected),
            (1, 2, 0)
        );
        assert_eq!(totals.success_ratio(), Some(1.0));
        // A night with only a client's mistake: no ratio at all, not 0 %.
        window.record_at(200, Route::Legacy, Disposition::Refused);
        assert_eq!(window.totals_at(200, Route::Legacy).success_ratio(), None);
    }

    #[test]
    fn latency_percentiles_per_route_over_five_minutes() {
        let window = RecentWindow::default();
        assert_eq!(window.latency_at(300, Route::Ses), None);
        // 98 fast answers and 2 slow ones: the median is fast, p99 slow.
        for _ in 0..98 {
            window.upstream_time_at(300, Route::Ses, Duration::from_millis(40));
        }
        window.upstream_time_at(301, Route::Ses, Duration::from_secs(3));
        window.upstream_time_at(302, Route::Ses, Duration::from_secs(3));
        window.upstream_time_at(302, Route::Legacy, Duration::from_millis(200));
        let ses = window.latency_at(302, Route::Ses).unwrap();
        assert_eq!(ses.samples, 100);
        let near = |d: Duration, want: Duration| d.abs_diff(want) <= want / 50;
        assert!(near(ses.p50, Duration::from_millis(40)), "{ses:?}");
        assert!(near(ses.p99, Duration::from_secs(3)), "{ses:?}");
        let legacy = window.latency_at(302, Route::Legacy).unwrap();
        assert_eq!(legacy.samples, 1);
        assert!(near(legacy.p50, Duration::from_millis(200)), "{legacy:?}");
        // Minute 300 leaves at 305: only the slow answers remain.
        let later = window.latency_at(305, Route::Ses).unwrap();
        assert_eq!(later.samples, 2);
        assert!(near(later.p50, Duration::from_secs(3)), "{later:?}");
        // Nothing at all from 307 on; an hour's wait is counted at the bound.
        assert_eq!(window.latency_at(307, Route::Ses), None);
        window.upstream_time_at(310, Route::Ses, Duration::from_secs(3600));
        let capped = window.latency_at(310, Route::Ses).unwrap();
        assert!(capped.p99 <= Duration::from_secs(610), "{capped:?}");
    }

    #[test]
    fn top_errors_are_ordered_by_count_and_expire() {
        let window = RecentWindow::default();
        window.error_at(400, Route::Legacy, "451 4.4.1");
        for _ in 0..3 {
            window.error_at(400, Route::Ses, "Throttling");
        }
        window.error_at(401, Route::Ses, "MessageRejected");
        window.error_at(402, Route::Ses, "MessageRejected");
        window.error_at(402, Route::Ses, "Throttling");
        window.error_at(403, Route::Ses, "451 4.4.1");
        let top = window.top_errors_at(403, 5);
        let names: Vec<(Route, &str, u64)> = top
            .iter()
            .map(|e| (e.route, e.code.as_str(), e.count))
            .collect();
        assert_eq!(
            names,
            [
                (Route::Ses, "Throttling", 4),
                (Route::Ses, "MessageRejected", 2),
                // A tie: SES before legacy, the same code kept apart per route.
                (Route::Ses, "451 4.4.1", 1),
                (Route::Legacy, "451 4.4.1", 1),
            ]
        );
        assert_eq!(window.top_errors_at(403, 2).len(), 2);
        // Minute 400 has left at 405.
        let later = window.top_errors_at(405, 5);
        assert_eq!(later[0].code, "MessageRejected");
        assert_eq!(later[0].count, 2);
        assert!(later.iter().all(|e| e.route == Route::Ses), "{later:?}");
        assert!(window.top_errors_at(410, 5).is_empty());
    }

    #[test]
    fn error_codes_stay_bounded_whatever_an_upstream_invents() {
        let window = RecentWindow::default();
        for n in 0..1000 {
            window.error_at(500, Route::Ses, &format!("Invented{n}"));
        }
        window.error_at(500, Route::Ses, &"X".repeat(10_000));
        window.error_at(500, Route::Legacy, "550 5.7.1");
        let top = window.top_errors_at(500, MAX_CODES + 1);
        let other = top.iter().find(|e| e.code == OTHER_CODE).unwrap();
        assert_eq!(
            (other.route, other.count),
            (Route::Ses, 1001 - MAX_CODES as u64)
        );
        assert_eq!(top.iter().map(|e| e.count).sum::<u64>(), 1001);
        assert!(top.iter().all(|e| e.route == Route::Ses), "{top:?}");
        // The other route's overflow has an entry of its own, not SES's.
        let all = window.top_errors_at(500, 1000);
        assert_eq!(all.len(), MAX_CODES + 2);
        let legacy_other = all.iter().find(|e| e.route == Route::Legacy).unwrap();
        assert_eq!(
            (legacy_other.code.as_str(), legacy_other.count),
            (OTHER_CODE, 1)
        );
        assert_eq!(cut(&"é".repeat(100), MAX_CODE_LEN).len(), MAX_CODE_LEN);
        let odd = format!("a{}", "é".repeat(100));
        assert_eq!(cut(&odd, MAX_CODE_LEN).len(), MAX_CODE_LEN - 1);
    }
}

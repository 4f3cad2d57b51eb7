//! The status page's view: transactions of the last five minutes, per route
//! and disposition.

use std::sync::{Mutex, OnceLock};
use std::time::{SystemTime, UNIX_EPOCH};

use crate::disposition::Disposition;
use crate::route::Route;

/// Transactions of the last five minutes, per route, for the status page:
/// one slot per minute, reused round-robin (a slot whose minute has passed
/// is cleared when its minute comes again).
#[derive(Debug, Default)]
pub struct RecentWindow {
    slots: Mutex<[MinuteCounts; SLOTS]>,
}

/// One minute's counts: `[route][disposition]`.
#[derive(Debug, Default, Clone, Copy)]
struct MinuteCounts {
    /// Minute since the epoch this slot counts.
    minute: u64,
    counts: [[u64; 4]; 2],
}

/// The window plus the minute being counted.
const SLOTS: usize = WINDOW_MINUTES as usize + 1;

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

const WINDOW_MINUTES: u64 = 5;

fn minute_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() / 60)
}

impl RecentWindow {
    /// Counts one transaction now.
    pub fn record(&self, route: Route, result: Disposition) {
        self.record_at(minute_now(), route, result);
    }

    fn record_at(&self, minute: u64, route: Route, result: Disposition) {
        let mut slots = self.slots.lock().unwrap_or_else(|p| p.into_inner());
        let slot = &mut slots[(minute % SLOTS as u64) as usize];
        if slot.minute != minute {
            *slot = MinuteCounts {
                minute,
                counts: [[0; 4]; 2],
            };
        }
        slot.counts[route_index(route)][result as usize] += 1;
    }

    /// Totals for `route` over the last five minutes.
    pub fn totals(&self, route: Route) -> RouteTotals {
        self.totals_at(minute_now(), route)
    }

    fn totals_at(&self, minute: u64, route: Route) -> RouteTotals {
        let slots = self.slots.lock().unwrap_or_else(|p| p.into_inner());
        let mut by = [0u64; 4];
        for slot in slots.iter() {
            if slot.minute > minute || slot.minute + WINDOW_MINUTES <= minute {
                continue;
            }
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
}

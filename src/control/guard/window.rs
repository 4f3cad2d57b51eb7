//! The judge's sliding window, in bounded memory whatever the rate: counts
//! per second of the window (at most one slot per second), the window's
//! delays in one histogram (`hdrhistogram`, three significant figures over
//! 0 s to ~48 days), and the most recent distinct rejected clients (at most
//! `min-reject-clients`). At 4,000 messages a second over 5 minutes that is
//! 300 slots and a fixed histogram instead of 1.2 million entries.
//!
//! Counts are exact (the judge decides on them); the delays' p95 is read from
//! the histogram, within one of its buckets of the exact nearest rank (exact
//! below 2,048 s, 0.1 % above).

use std::collections::VecDeque;
use std::net::IpAddr;
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;

use super::EventKind;

/// Delays above this many seconds (about 48 days) are recorded as it.
const HIGHEST_DELAY: u64 = 1 << 22;

/// Significant figures of the delay histogram: whole seconds up to 2,048 s.
const DELAY_SIGFIG: u8 = 3;

/// What the window holds at a moment, its delay p95 aside.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(super) struct Counts {
    /// SES-route upstream outcomes (accepted, failed or rejected).
    pub outcomes: u64,
    /// Of which not acceptance and not a per-message refusal.
    pub failures: u64,
    /// Of which per-message refusals (`MessageRejected` and the like).
    pub rejected: u64,
    /// Accepted messages with a known delay.
    pub delays: u64,
    /// Of which over `max-delay`.
    pub delays_over: u64,
    /// SES Send events.
    pub sends: u64,
    /// Permanent bounce events.
    pub bounces: u64,
    /// Complaint events.
    pub complaints: u64,
}

impl Counts {
    fn add(&mut self, other: &Counts) {
        self.outcomes += other.outcomes;
        self.failures += other.failures;
        self.rejected += other.rejected;
        self.delays += other.delays;
        self.delays_over += other.delays_over;
        self.sends += other.sends;
        self.bounces += other.bounces;
        self.complaints += other.complaints;
    }

    fn subtract(&mut self, other: &Counts) {
        self.outcomes -= other.outcomes;
        self.failures -= other.failures;
        self.rejected -= other.rejected;
        self.delays -= other.delays;
        self.delays_over -= other.delays_over;
        self.sends -= other.sends;
        self.bounces -= other.bounces;
        self.complaints -= other.complaints;
    }
}

/// One second of the window.
#[derive(Debug)]
struct Second {
    /// Seconds since the window's origin.
    at: u64,
    counts: Counts,
    /// (histogram bucket's lowest value, count): at most one entry per
    /// bucket, to take out of the histogram when the second expires.
    delays: Vec<(u64, u64)>,
}

/// Observations younger than `length`, by the second.
#[derive(Debug)]
pub(super) struct Window {
    /// Whole seconds (at least 1).
    length: u64,
    /// Delays over it are counted as they arrive (the judge's delay test).
    max_delay: Duration,
    /// The first observation's instant: seconds are counted from it.
    origin: Option<Instant>,
    seconds: VecDeque<Second>,
    counts: Counts,
    delays: Histogram<u64>,
    /// Scratch for the delays of expiring seconds.
    expiring: Histogram<u64>,
    /// The most recent distinct clients with a rejection, and the second of
    /// their last one, newest first; at most `clients_kept` long.
    rejecters: Vec<(IpAddr, u64)>,
    clients_kept: usize,
}

fn delay_histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, HIGHEST_DELAY, DELAY_SIGFIG)
        .expect("constant histogram bounds are valid")
}

impl Window {
    /// An empty window of `length` (whole seconds, rounded up), counting
    /// delays over `max_delay` and telling apart up to `clients_kept`
    /// rejected clients.
    pub(super) fn new(length: Duration, max_delay: Duration, clients_kept: usize) -> Window {
        let length = length.as_secs() + u64::from(length.subsec_nanos() > 0);
        Window {
            length: length.max(1),
            max_delay,
            origin: None,
            seconds: VecDeque::new(),
            counts: Counts::default(),
            delays: delay_histogram(),
            expiring: delay_histogram(),
            rejecters: Vec::new(),
            clients_kept: clients_kept.max(1),
        }
    }

    fn second_of(&mut self, now: Instant) -> u64 {
        let origin = *self.origin.get_or_insert(now);
        now.saturating_duration_since(origin).as_secs()
    }

    /// The slot of `now`, created when it is a new second.
    fn slot(&mut self, now: Instant) -> &mut Second {
        let at = self.second_of(now);
        // Observations come under the guard's lock in clock order, so the
        // newest second is the last one (an older `at` joins it).
        if self.seconds.back().is_none_or(|last| last.at < at) {
            self.seconds.push_back(Second {
                at,
                counts: Counts::default(),
                delays: Vec::new(),
            });
        }
        self.seconds.back_mut().expect("a slot was just ensured")
    }

    fn count(&mut self, now: Instant, counts: Counts) {
        self.slot(now).counts.add(&counts);
        self.counts.add(&counts);
    }

    /// One SES-route upstream outcome; its delay is kept only when accepted.
    pub(super) fn outcome(&mut self, now: Instant, accepted: bool, delay: Option<Duration>) {
        let delay = delay.filter(|_| accepted);
        let over = delay.is_some_and(|d| d > self.max_delay);
        self.count(
            now,
            Counts {
                outcomes: 1,
                failures: u64::from(!accepted),
                delays: u64::from(delay.is_some()),
                delays_over: u64::from(over),
                ..Counts::default()
            },
        );
        if let Some(delay) = delay {
            let value = self
                .delays
                .lowest_equivalent(delay.as_secs().min(HIGHEST_DELAY));
            self.delays.saturating_record(value);
            let slot = self.slot(now);
            match slot.delays.iter_mut().find(|(v, _)| *v == value) {
                Some((_, count)) => *count += 1,
                None => slot.delays.push((value, 1)),
            }
        }
    }

    /// One per-message refusal by SES, for the message of `client`.
    pub(super) fn rejection(&mut self, now: Instant, client: IpAddr) {
        self.count(
            now,
            Counts {
                outcomes: 1,
                rejected: 1,
                ..Counts::default()
            },
        );
        let at = self.second_of(now);
        self.rejecters.retain(|(ip, _)| *ip != client);
        self.rejecters.insert(0, (client, at));
        // Only whether `clients_kept` distinct clients rejected within the
        // window matters: the older ones expire before these do.
        self.rejecters.truncate(self.clients_kept);
    }

    /// One SES event.
    pub(super) fn event(&mut self, now: Instant, kind: EventKind) {
        let mut counts = Counts::default();
        match kind {
            EventKind::Send => counts.sends = 1,
            EventKind::Bounce => counts.bounces = 1,
            EventKind::Complaint => counts.complaints = 1,
        }
        self.count(now, counts);
    }

    /// Drops what is `length` old or older, then counts what is left.
    pub(super) fn counts(&mut self, now: Instant) -> Counts {
        self.expire(now);
        self.counts
    }

    /// Distinct clients with a rejection in the window as last expired, up to
    /// the number kept.
    pub(super) fn rejecting_clients(&self) -> u64 {
        self.rejecters.len() as u64
    }

    fn expire(&mut self, now: Instant) {
        let Some(origin) = self.origin else {
            return;
        };
        let now = now.saturating_duration_since(origin).as_secs();
        let mut any_delay = false;
        while let Some(second) = self.seconds.front() {
            if now - second.at.min(now) < self.length {
                break;
            }
            let second = self.seconds.pop_front().expect("front exists");
            self.counts.subtract(&second.counts);
            for (value, count) in second.delays {
                self.expiring.saturating_record_n(value, count);
                any_delay = true;
            }
        }
        self.rejecters.retain(|(_, at)| *at + self.length > now);
        if any_delay {
            if self.delays.subtract(&self.expiring).is_err() {
                // Cannot happen (the same values went in); rebuild rather than drift.
                self.rebuild_delays();
            }
            self.expiring.reset();
        }
    }

    fn rebuild_delays(&mut self) {
        self.delays.reset();
        for second in &self.seconds {
            for (value, count) in &second.delays {
                self.delays.saturating_record_n(*value, *count);
            }
        }
    }

    /// The p95 (nearest rank) of the delays in the window as last expired,
    /// as the highest value of its histogram bucket.
    pub(super) fn delay_p95(&self) -> Option<Duration> {
        p95(&self.delays).map(Duration::from_secs)
    }
}

/// Nearest-rank p95 of a histogram: the highest value of the bucket that
/// holds the ceil(0.95 n)-th smallest recording (integer rank, no float).
fn p95(histogram: &Histogram<u64>) -> Option<u64> {
    let n = histogram.len();
    if n == 0 {
        return None;
    }
    let rank = (n * 95).div_ceil(100);
    let mut seen = 0;
    for bucket in histogram.iter_recorded() {
        seen += bucket.count_at_value();
        if seen >= rank {
            return Some(bucket.value_iterated_to());
        }
    }
    Some(histogram.max())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secs(n: u64) -> Duration {
        Duration::from_secs(n)
    }

    fn p95_of(values: &[u64]) -> Option<u64> {
        let mut histogram = delay_histogram();
        for v in values {
            histogram.saturating_record(*v);
        }
        p95(&histogram)
    }

    /// The exact nearest rank, by sorting.
    fn exact_p95(values: &[u64]) -> u64 {
        let mut sorted = values.to_vec();
        sorted.sort_unstable();
        sorted[(sorted.len() * 95).div_ceil(100) - 1]
    }

    #[test]
    fn p95_is_nearest_rank() {
        assert_eq!(p95_of(&[]), None);
        assert_eq!(p95_of(&[7]), Some(7));
        // 1..=100: the 95th smallest is 95.
        assert_eq!(p95_of(&(1..=100).rev().collect::<Vec<_>>()), Some(95));
        // 1..=20: ceil(19) = 19th smallest.
        assert_eq!(p95_of(&(1..=20).collect::<Vec<_>>()), Some(19));
        // 1..=21: ceil(19.95) = 20th.
        assert_eq!(p95_of(&(1..=21).collect::<Vec<_>>()), Some(20));
        assert_eq!(p95_of(&[0, 0, 0]), Some(0));
    }

    #[test]
    fn p95_stays_within_one_bucket_of_the_exact_nearest_rank_on_random_data() {
        // xorshift64: reproducible random data without a dependency.
        let mut state = 0x9E37_79B9_7F4A_7C15_u64;
        let mut next = move || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        let histogram = delay_histogram();
        for round in 0..200 {
            let n = 1 + (next() % 5_000) as usize;
            // Spread over every scale: up to 2^(4..22) seconds.
            let scale = 1u64 << (4 + round % 19);
            let values: Vec<u64> = (0..n).map(|_| next() % scale).collect();
            let exact = exact_p95(&values);
            let approx = p95_of(&values).unwrap();
            assert!(
                histogram.equivalent(exact, approx),
                "round {round}: n={n} exact {exact}, histogram {approx}"
            );
            assert!(approx >= exact, "the bucket's highest value");
            if exact < 2048 {
                assert_eq!(approx, exact, "whole seconds are exact below 2048 s");
            }
        }
    }

    #[test]
    fn delays_expire_with_their_second_and_the_histogram_follows() {
        let start = Instant::now();
        let mut window = Window::new(secs(60), secs(300), 2);
        for _ in 0..19 {
            window.outcome(start, true, Some(secs(10)));
        }
        window.outcome(start + secs(30), true, Some(secs(900)));
        window.outcome(start + secs(30), true, Some(secs(900)));
        let counts = window.counts(start + secs(59));
        assert_eq!((counts.delays, counts.delays_over), (21, 2));
        assert_eq!(window.delay_p95(), Some(secs(900)));
        let counts = window.counts(start + secs(60));
        assert_eq!((counts.delays, counts.delays_over), (2, 2));
        assert_eq!(window.delay_p95(), Some(secs(900)));
        window.counts(start + secs(90));
        assert_eq!(window.delay_p95(), None);
        assert_eq!(window.seconds.len(), 0);
    }

    #[test]
    fn memory_is_one_slot_per_second_whatever_the_rate() {
        let start = Instant::now();
        let mut window = Window::new(secs(300), secs(300), 2);
        for second in 0..600u64 {
            for i in 0..200u64 {
                window.outcome(start + secs(second), i % 7 != 0, Some(secs(i % 5)));
            }
            window.counts(start + secs(second));
            assert!(window.seconds.len() <= 300);
            assert!(window.seconds.iter().all(|s| s.delays.len() <= 5));
        }
        let counts = window.counts(start + secs(599));
        assert_eq!(counts.outcomes, 300 * 200);
    }

    #[test]
    fn every_count_expires_with_its_second() {
        let start = Instant::now();
        let mut window = Window::new(secs(60), secs(300), 2);
        window.outcome(start, true, Some(secs(900)));
        window.outcome(start, false, None);
        window.rejection(start, "192.0.2.1".parse().unwrap());
        for kind in [EventKind::Send, EventKind::Bounce, EventKind::Complaint] {
            window.event(start, kind);
        }
        let expected = Counts {
            outcomes: 3,
            failures: 1,
            rejected: 1,
            delays: 1,
            delays_over: 1,
            sends: 1,
            bounces: 1,
            complaints: 1,
        };
        assert_eq!(window.counts(start + secs(59)), expected);
        assert_eq!(window.counts(start + secs(60)), Counts::default());
    }

    #[test]
    fn rejecting_clients_are_distinct_bounded_and_expire() {
        let start = Instant::now();
        let one: IpAddr = "192.0.2.1".parse().unwrap();
        let two: IpAddr = "192.0.2.2".parse().unwrap();
        let three: IpAddr = "192.0.2.3".parse().unwrap();
        let mut window = Window::new(secs(60), secs(300), 2);
        for _ in 0..5 {
            window.rejection(start, one);
        }
        window.counts(start);
        assert_eq!(window.rejecting_clients(), 1);
        window.rejection(start + secs(10), two);
        window.rejection(start + secs(20), three);
        let counts = window.counts(start + secs(20));
        assert_eq!((counts.rejected, counts.outcomes), (7, 7));
        assert_eq!(window.rejecters.len(), 2, "at most clients_kept");
        assert_eq!(window.rejecting_clients(), 2);
        window.counts(start + secs(75));
        assert_eq!(window.rejecting_clients(), 1, "two's rejection expired");
        window.counts(start + secs(80));
        assert_eq!(window.rejecting_clients(), 0);
    }
}

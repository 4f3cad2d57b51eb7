//! The judge's sliding window: timestamped observations in arrival order,
//! with running counts beside the queues so that reading them costs O(1),
//! and the p95 of the delays (nearest rank), computed only when asked.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use super::EventKind;

/// What the window holds at a moment, its delay p95 aside.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(super) struct Counts {
    /// SES-route upstream outcomes.
    pub outcomes: u64,
    /// Of which not acceptance.
    pub failures: u64,
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

/// Observations younger than `length`.
#[derive(Debug)]
pub(super) struct Window {
    length: Duration,
    /// Delays over it are counted as they arrive (the judge's delay test).
    max_delay: Duration,
    /// (when, accepted)
    outcomes: VecDeque<(Instant, bool)>,
    failures: u64,
    /// (when, delay)
    delays: VecDeque<(Instant, Duration)>,
    delays_over: u64,
    /// (when, kind)
    events: VecDeque<(Instant, EventKind)>,
    sends: u64,
    bounces: u64,
    complaints: u64,
}

impl Window {
    /// An empty window of `length`, counting delays over `max_delay`.
    pub(super) fn new(length: Duration, max_delay: Duration) -> Window {
        Window {
            length,
            max_delay,
            outcomes: VecDeque::new(),
            failures: 0,
            delays: VecDeque::new(),
            delays_over: 0,
            events: VecDeque::new(),
            sends: 0,
            bounces: 0,
            complaints: 0,
        }
    }

    /// One SES-route upstream outcome; its delay is kept only when accepted.
    pub(super) fn outcome(&mut self, now: Instant, accepted: bool, delay: Option<Duration>) {
        self.outcomes.push_back((now, accepted));
        self.failures += u64::from(!accepted);
        if let Some(delay) = delay.filter(|_| accepted) {
            self.delays.push_back((now, delay));
            self.delays_over += u64::from(delay > self.max_delay);
        }
    }

    /// One SES event.
    pub(super) fn event(&mut self, now: Instant, kind: EventKind) {
        self.events.push_back((now, kind));
        self.count_event(kind, 1);
    }

    fn count_event(&mut self, kind: EventKind, delta: i64) {
        let counter = match kind {
            EventKind::Send => &mut self.sends,
            EventKind::Bounce => &mut self.bounces,
            EventKind::Complaint => &mut self.complaints,
        };
        *counter = counter.saturating_add_signed(delta);
    }

    /// Drops what is `length` old or older, then counts what is left.
    pub(super) fn counts(&mut self, now: Instant) -> Counts {
        self.expire(now);
        Counts {
            outcomes: self.outcomes.len() as u64,
            failures: self.failures,
            delays: self.delays.len() as u64,
            delays_over: self.delays_over,
            sends: self.sends,
            bounces: self.bounces,
            complaints: self.complaints,
        }
    }

    fn expire(&mut self, now: Instant) {
        let window = self.length;
        let gone = |at: Instant| now.saturating_duration_since(at) >= window;
        while let Some(&(at, accepted)) = self.outcomes.front() {
            if !gone(at) {
                break;
            }
            self.outcomes.pop_front();
            self.failures -= u64::from(!accepted);
        }
        while let Some(&(at, delay)) = self.delays.front() {
            if !gone(at) {
                break;
            }
            self.delays.pop_front();
            self.delays_over -= u64::from(delay > self.max_delay);
        }
        while let Some(&(at, kind)) = self.events.front() {
            if !gone(at) {
                break;
            }
            self.events.pop_front();
            self.count_event(kind, -1);
        }
    }

    /// The p95 (nearest rank) of the delays in the window as last expired.
    pub(super) fn delay_p95(&self) -> Option<Duration> {
        let mut all: Vec<Duration> = self.delays.iter().map(|(_, d)| *d).collect();
        p95(&mut all)
    }
}

/// Nearest-rank p95: the ceil(0.95 n)-th smallest value.
fn p95(values: &mut [Duration]) -> Option<Duration> {
    if values.is_empty() {
        return None;
    }
    let rank = (values.len() * 95).div_ceil(100);
    let (_, value, _) = values.select_nth_unstable(rank - 1);
    Some(*value)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secs(n: u64) -> Duration {
        Duration::from_secs(n)
    }

    #[test]
    fn p95_is_nearest_rank() {
        assert_eq!(p95(&mut []), None);
        assert_eq!(p95(&mut [secs(7)]), Some(secs(7)));
        // 1..=100: the 95th smallest is 95.
        let mut values: Vec<Duration> = (1..=100).rev().map(secs).collect();
        assert_eq!(p95(&mut values), Some(secs(95)));
        // 1..=20: ceil(19) = 19th smallest.
        let mut values: Vec<Duration> = (1..=20).map(secs).collect();
        assert_eq!(p95(&mut values), Some(secs(19)));
        // 1..=21: ceil(19.95) = 20th.
        let mut values: Vec<Duration> = (1..=21).map(secs).collect();
        assert_eq!(p95(&mut values), Some(secs(20)));
    }
}

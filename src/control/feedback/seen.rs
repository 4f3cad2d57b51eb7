//! Which events were counted already: SQS delivers at least once, and every
//! relay of a fleet reads the same queue, so the same event can arrive twice.
//! Keys are remembered for the guard's window (after that the event no longer
//! counts anyway), at most [`MAX_KEYS`] of them: 8-byte hashes, about 27 bytes
//! each with the expiry queue, so about 7 MB at the bound.

use std::collections::{HashSet, VecDeque};
use std::time::{Duration, Instant};

/// The most keys remembered; past it the oldest is forgotten first. At 4,000
/// events a second that is about a minute, longer than SQS's default
/// visibility timeout (30 s), after which a redelivery comes.
pub const MAX_KEYS: usize = 1 << 18;

/// Event keys seen within `window`, bounded.
#[derive(Debug)]
pub struct Seen {
    window: Duration,
    bound: usize,
    keys: HashSet<u64>,
    order: VecDeque<(Instant, u64)>,
}

impl Seen {
    /// Remembers keys for `window`, at most `MAX_KEYS`.
    pub fn new(window: Duration) -> Seen {
        Seen::bounded(window, MAX_KEYS)
    }

    /// Remembers keys for `window`, at most `bound` (at least 1).
    pub fn bounded(window: Duration, bound: usize) -> Seen {
        Seen {
            window,
            bound: bound.max(1),
            keys: HashSet::new(),
            order: VecDeque::new(),
        }
    }

    /// Whether `key` is new at `now` (and from now on remembered).
    pub fn first(&mut self, now: Instant, key: u64) -> bool {
        while let Some(&(at, old)) = self.order.front() {
            if now.saturating_duration_since(at) < self.window && self.order.len() < self.bound {
                break;
            }
            self.order.pop_front();
            self.keys.remove(&old);
        }
        if !self.keys.insert(key) {
            return false;
        }
        self.order.push_back((now, key));
        true
    }

    /// Keys remembered now.
    pub fn len(&self) -> usize {
        self.keys.len()
    }

    /// Whether no key is remembered.
    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_key_counts_once_within_the_window_and_again_after_it() {
        let start = Instant::now();
        let mut seen = Seen::new(Duration::from_secs(60));
        assert!(seen.first(start, 1));
        assert!(!seen.first(start + Duration::from_secs(59), 1));
        assert!(seen.first(start + Duration::from_secs(59), 2));
        assert!(seen.first(start + Duration::from_secs(60), 1), "expired");
        assert_eq!(seen.len(), 2);
    }

    #[test]
    fn the_bound_forgets_the_oldest_first() {
        let start = Instant::now();
        let mut seen = Seen::bounded(Duration::from_secs(60), 3);
        for key in 0..10 {
            assert!(seen.first(start, key));
            assert!(seen.len() <= 3);
        }
        assert!(!seen.first(start, 9));
        assert!(seen.first(start, 0), "forgotten under the bound");
    }
}

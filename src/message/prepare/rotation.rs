//! Which key of a domain signs: the rotation set and its state.
//!
//! The keys of one domain, in config order (the last is the newest), form a
//! rotation set. The newest key whose DNS record has matched its private key
//! on `publish-confirmations` consecutive checks signs; until then the key
//! before it does, so a message is never signed with a key receivers cannot
//! find yet. The signing key only moves forward: a key whose record later
//! stops matching is reported (the consistency gauge), not switched away from,
//! since going back to an older key could be as wrong as staying.
//!
//! The state is atomics: sessions read the signing key at each transaction
//! while the DNS check (one task) writes it, so a switch needs no reload and
//! the next transaction already signs with the new key.

use std::sync::atomic::{AtomicU32, AtomicUsize, Ordering};

/// The keys of one domain and which of them signs.
#[derive(Debug)]
pub struct RotationSet {
    /// The `d=` domain, lowercased.
    pub domain: String,
    /// Indices of the set's keys in the key list, oldest first.
    members: Vec<usize>,
    /// Position in `members` of the signing key.
    active: AtomicUsize,
    /// Consecutive matching checks, per member.
    confirmations: Vec<AtomicU32>,
}

/// A switch of the signing key, for its audit line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Switch {
    /// Key-list index of the key that signed before.
    pub from: usize,
    /// Key-list index of the key that signs now.
    pub to: usize,
    /// The new key's consecutive matching checks.
    pub confirmations: u32,
}

/// How the signing key was chosen at startup.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StartChoice {
    /// The newest key whose record matches now (key-list index).
    Published(usize),
    /// No record matches: the first key of the set (key-list index).
    NonePublished(usize),
}

impl RotationSet {
    /// A set of the keys at `members` (key-list indices, oldest first, at
    /// least one); the first one signs until told otherwise.
    pub fn new(domain: String, members: Vec<usize>) -> RotationSet {
        let confirmations = members.iter().map(|_| AtomicU32::new(0)).collect();
        RotationSet {
            domain,
            members,
            active: AtomicUsize::new(0),
            confirmations,
        }
    }

    /// Key-list indices of the set's keys, oldest first.
    pub fn members(&self) -> &[usize] {
        &self.members
    }

    /// Key-list index of the signing key.
    pub fn active(&self) -> usize {
        self.members[self.active_position()]
    }

    fn active_position(&self) -> usize {
        self.active
            .load(Ordering::Acquire)
            .min(self.members.len() - 1)
    }

    /// Consecutive matching checks of the key at key-list index `key`.
    pub fn confirmations(&self, key: usize) -> u32 {
        self.position(key)
            .map_or(0, |p| self.confirmations[p].load(Ordering::Acquire))
    }

    /// Whether a key newer than the signing one is configured.
    pub fn pending(&self) -> bool {
        self.active_position() + 1 < self.members.len()
    }

    /// Whether the key at key-list index `key` is newer than the signing one.
    pub fn is_pending(&self, key: usize) -> bool {
        self.position(key)
            .is_some_and(|p| p > self.active_position())
    }

    fn position(&self, key: usize) -> Option<usize> {
        self.members.iter().position(|&m| m == key)
    }

    /// Startup: the newest key whose record matches now, else the first.
    /// `matches[i]` is the answer for the set's `i`-th key (oldest first).
    pub fn start(&self, matches: &[bool]) -> StartChoice {
        match matches.iter().rposition(|&m| m) {
            Some(position) => {
                self.active.store(position, Ordering::Release);
                StartChoice::Published(self.members[position])
            }
            None => {
                self.active.store(0, Ordering::Release);
                StartChoice::NonePublished(self.members[0])
            }
        }
    }

    /// One round of checks: `matches[i]` for the set's `i`-th key. Counts
    /// consecutive matches (any other answer starts again from zero), then
    /// moves the signing key forward to the newest key with at least
    /// `needed` of them, if that is newer than the signing one.
    pub fn record(&self, matches: &[bool], needed: u32) -> Option<Switch> {
        for (count, &matched) in self.confirmations.iter().zip(matches) {
            if matched {
                count.fetch_add(1, Ordering::AcqRel);
            } else {
                count.store(0, Ordering::Release);
            }
        }
        let current = self.active_position();
        let newest = self
            .confirmations
            .iter()
            .rposition(|c| c.load(Ordering::Acquire) >= needed)?;
        if newest <= current {
            return None;
        }
        self.active.store(newest, Ordering::Release);
        Some(Switch {
            from: self.members[current],
            to: self.members[newest],
            confirmations: self.confirmations[newest].load(Ordering::Acquire),
        })
    }

    /// Takes over what `old` knew of the same keys (a reload keeps the
    /// signing key and the counts of keys still configured): `same(a, b)`
    /// says whether this set's key-list index `a` is `old`'s `b`.
    pub fn carry_over(&self, old: &RotationSet, same: impl Fn(usize, usize) -> bool) {
        for (p, &key) in self.members.iter().enumerate() {
            if let Some(q) = old.members.iter().position(|&o| same(key, o)) {
                self.confirmations[p].store(
                    old.confirmations[q].load(Ordering::Acquire),
                    Ordering::Release,
                );
            }
        }
        let old_active = old.active();
        if let Some(p) = self.members.iter().position(|&k| same(k, old_active)) {
            self.active.store(p, Ordering::Release);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set(n: usize) -> RotationSet {
        RotationSet::new("goo.ne.jp".into(), (10..10 + n).collect())
    }

    #[test]
    fn a_newer_key_signs_after_enough_consecutive_matches() {
        let set = set(2);
        assert_eq!(set.active(), 10);
        assert!(set.pending());
        assert_eq!(set.record(&[true, true], 3), None);
        assert_eq!(set.record(&[true, true], 3), None);
        assert_eq!(set.active(), 10, "two checks are not three");
        let switch = set.record(&[true, true], 3).unwrap();
        assert_eq!(
            switch,
            Switch {
                from: 10,
                to: 11,
                confirmations: 3
            }
        );
        assert_eq!(set.active(), 11);
        assert!(!set.pending());
        // Further matches switch nothing again.
        assert_eq!(set.record(&[true, true], 3), None);
    }

    #[test]
    fn a_miss_starts_the_count_again() {
        let set = set(2);
        set.record(&[true, true], 3);
        set.record(&[true, true], 3);
        set.record(&[true, false], 3);
        assert_eq!(set.confirmations(11), 0);
        assert_eq!(set.record(&[true, true], 3), None);
        assert_eq!(set.record(&[true, true], 3), None);
        assert_eq!(set.active(), 10);
        assert!(set.record(&[true, true], 3).is_some());
    }

    #[test]
    fn a_key_that_never_matched_is_never_used() {
        let set = set(2);
        for _ in 0..100 {
            assert_eq!(set.record(&[true, false], 1), None);
        }
        assert_eq!(set.active(), 10);
        assert!(set.is_pending(11));
    }

    #[test]
    fn the_signing_key_never_moves_back() {
        let three = set(3);
        assert_eq!(three.record(&[true, true, false], 1).unwrap().to, 11);
        // The new key's record disappears, the old one still matches: no switch back.
        for _ in 0..5 {
            assert_eq!(three.record(&[true, false, false], 1), None);
        }
        assert_eq!(three.active(), 11);
        // The newest of several confirmed keys wins, skipping the middle one.
        assert_eq!(set(3).record(&[true, true, true], 1).unwrap().to, 12);
    }

    #[test]
    fn startup_takes_the_newest_published_key_else_the_first() {
        let set = set(3);
        assert_eq!(set.start(&[true, true, false]), StartChoice::Published(11));
        assert_eq!(set.active(), 11);
        assert_eq!(
            set.start(&[false, false, false]),
            StartChoice::NonePublished(10)
        );
        assert_eq!(set.active(), 10);
    }

    #[test]
    fn a_reload_keeps_the_signing_key_and_the_counts() {
        let old = set(2);
        old.record(&[true, true], 1);
        old.record(&[true, true], 1);
        assert_eq!(old.active(), 11);
        // The new config adds a third key: 10 and 11 are the same keys.
        let new = set(3);
        new.carry_over(&old, |a, b| a == b);
        assert_eq!(new.active(), 11);
        assert_eq!(new.confirmations(11), 2);
        assert_eq!(new.confirmations(12), 0);
        assert!(new.pending());
    }
}

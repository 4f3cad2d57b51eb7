//! The relay-wide budget of message bytes held while DATA is received and
//! delivered (`smtp.max-data-memory`): without it, a thousand sessions each
//! sending a message just under the size limit could hold 40 GB.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

/// The bytes of message data held by all sessions together, against
/// `smtp.max-data-memory` (reloadable). Sessions take `Reservation`s from it.
#[derive(Debug)]
pub struct DataMemory {
    limit: AtomicUsize,
    held: AtomicUsize,
    /// Told the bytes held after each change (the relay's gauge); the SMTP
    /// layer records no metric itself, so it imports nothing above it.
    observer: fn(usize),
}

impl DataMemory {
    /// A budget of `limit` bytes, unobserved.
    pub fn new(limit: usize) -> Arc<DataMemory> {
        DataMemory::observed(limit, |_| {})
    }

    /// A budget of `limit` bytes whose holdings `observer` is told after each change.
    pub fn observed(limit: usize, observer: fn(usize)) -> Arc<DataMemory> {
        Arc::new(DataMemory {
            limit: AtomicUsize::new(limit),
            held: AtomicUsize::new(0),
            observer,
        })
    }

    /// No limit (tests, fuzzing).
    pub fn unlimited() -> Arc<DataMemory> {
        DataMemory::new(usize::MAX)
    }

    /// Changes the limit (SIGHUP); what is held stays held.
    pub fn set_limit(&self, limit: usize) {
        self.limit.store(limit, Ordering::Relaxed);
    }

    /// Bytes held now.
    pub fn held(&self) -> usize {
        self.held.load(Ordering::Relaxed)
    }

    /// Takes `bytes` if they fit under the limit.
    fn take(&self, bytes: usize) -> bool {
        let limit = self.limit.load(Ordering::Relaxed);
        let taken = self
            .held
            .fetch_update(Ordering::AcqRel, Ordering::Relaxed, |held| {
                held.checked_add(bytes).filter(|&total| total <= limit)
            });
        if let Ok(before) = taken {
            (self.observer)(before + bytes);
        }
        taken.is_ok()
    }

    fn give_back(&self, bytes: usize) {
        if bytes > 0 {
            let before = self.held.fetch_sub(bytes, Ordering::AcqRel);
            (self.observer)(before - bytes);
        }
    }
}

/// Bytes of [`DataMemory`] held by one message; given back when dropped, so a
/// message counts until its transaction has ended, whatever path it took.
#[derive(Debug)]
pub struct Reservation {
    memory: Arc<DataMemory>,
    bytes: usize,
}

impl Reservation {
    /// An empty reservation on `memory`.
    pub fn new(memory: Arc<DataMemory>) -> Reservation {
        Reservation { memory, bytes: 0 }
    }

    /// Grows the reservation by `bytes`; false (and unchanged) if they do not fit.
    pub(super) fn grow(&mut self, bytes: usize) -> bool {
        let ok = self.memory.take(bytes);
        if ok {
            self.bytes += bytes;
        }
        ok
    }

    /// Bytes held.
    pub fn bytes(&self) -> usize {
        self.bytes
    }

    pub(super) fn release(&mut self) {
        self.memory.give_back(std::mem::take(&mut self.bytes));
    }
}

impl Drop for Reservation {
    fn drop(&mut self) {
        self.release();
    }
}

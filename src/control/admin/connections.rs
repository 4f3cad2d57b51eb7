//! The admin listener's connections: a cap, and who makes room at it.
//!
//! A connection is busy while a request is being handled, idle otherwise
//! (before its first request, or between two on keep-alive). At the cap, the
//! connection idle the longest is closed for the new one, so connections
//! that send nothing cannot keep out a load balancer's probe, which sends
//! its request at once. A new connection is refused only when every open one
//! is busy.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use tokio_util::sync::CancellationToken;

struct Entry {
    busy: usize,
    idle_since: Instant,
    close: CancellationToken,
}

#[derive(Default)]
struct Registry {
    next_id: u64,
    open: BTreeMap<u64, Entry>,
}

/// The open connections, against a cap.
pub(super) struct Connections {
    registry: Arc<Mutex<Registry>>,
    max: usize,
}

impl Connections {
    pub(super) fn new(max: usize) -> Connections {
        Connections {
            registry: Arc::new(Mutex::new(Registry::default())),
            max: max.max(1),
        }
    }

    /// A place for a new connection, closing the longest-idle one at the
    /// cap; `None` when every open connection is busy.
    pub(super) fn admit(&self) -> Option<Connection> {
        let mut registry = lock(&self.registry);
        if registry.open.len() >= self.max {
            let longest_idle = registry
                .open
                .iter()
                .filter(|(_, e)| e.busy == 0)
                .min_by_key(|(_, e)| e.idle_since)
                .map(|(id, _)| *id)?;
            if let Some(entry) = registry.open.remove(&longest_idle) {
                entry.close.cancel();
            }
        }
        let id = registry.next_id;
        registry.next_id += 1;
        let close = CancellationToken::new();
        registry.open.insert(
            id,
            Entry {
                busy: 0,
                idle_since: Instant::now(),
                close: close.clone(),
            },
        );
        Some(Connection(Arc::new(Slot {
            id,
            close,
            registry: self.registry.clone(),
        })))
    }

    #[cfg(test)]
    pub(super) fn open(&self) -> usize {
        lock(&self.registry).open.len()
    }
}

fn lock(registry: &Mutex<Registry>) -> std::sync::MutexGuard<'_, Registry> {
    registry.lock().unwrap_or_else(|p| p.into_inner())
}

struct Slot {
    id: u64,
    close: CancellationToken,
    registry: Arc<Mutex<Registry>>,
}

impl Drop for Slot {
    fn drop(&mut self) {
        lock(&self.registry).open.remove(&self.id);
    }
}

/// One admitted connection; its place is given back when the last clone drops.
#[derive(Clone)]
pub(super) struct Connection(Arc<Slot>);

impl Connection {
    /// Resolves when the connection is closed to make room.
    pub(super) fn closed(&self) -> tokio_util::sync::WaitForCancellationFutureOwned {
        self.0.close.clone().cancelled_owned()
    }

    /// Marks the connection busy until the returned value drops (one request).
    pub(super) fn busy(&self) -> Busy {
        if let Some(entry) = lock(&self.0.registry).open.get_mut(&self.0.id) {
            entry.busy += 1;
        }
        Busy(self.clone())
    }
}

/// A request in progress on a connection.
pub(super) struct Busy(Connection);

impl Drop for Busy {
    fn drop(&mut self) {
        if let Some(entry) = lock(&self.0.0.registry).open.get_mut(&self.0.0.id) {
            entry.busy = entry.busy.saturating_sub(1);
            entry.idle_since = Instant::now();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn at_the_cap_the_longest_idle_makes_room_and_busy_ones_never_do() {
        let connections = Connections::new(3);
        let first = connections.admit().unwrap();
        let second = connections.admit().unwrap();
        let third = connections.admit().unwrap();
        let _busy = second.busy();
        // Full: the first (idle the longest) is closed for the fourth.
        let fourth = connections.admit().unwrap();
        assert!(first.0.close.is_cancelled());
        assert!(!second.0.close.is_cancelled() && !third.0.close.is_cancelled());
        assert_eq!(connections.open(), 3);
        let _busy3 = third.busy();
        let _busy4 = fourth.busy();
        // Every open connection busy: refused.
        assert!(connections.admit().is_none());
        drop(_busy4);
        assert!(connections.admit().is_some());
        assert!(fourth.0.close.is_cancelled());
    }

    #[test]
    fn a_closed_connection_gives_its_place_back() {
        let connections = Connections::new(1);
        let only = connections.admit().unwrap();
        let clone = only.clone();
        drop(only);
        assert_eq!(connections.open(), 1, "a clone still holds it");
        drop(clone);
        assert_eq!(connections.open(), 0);
    }
}

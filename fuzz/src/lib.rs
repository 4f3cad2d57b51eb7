//! The fuzz targets' bodies, kept out of the AFL binaries so `cargo test`
//! here can replay the seed corpus (and any crash AFL found) without AFL.
//!
//! - [`framing`]: command and DATA framing over arbitrary read splits
//!   (`smtp::Input`, `smtp::MessageReceiver`), the SMTP-smuggling property
//!   included.
//! - [`prepare`]: message preparation (`prepare::Preparer::prepare`) on
//!   arbitrary bytes.
//! - [`config`]: the config loader and `validate()` on hostile values of
//!   every numeric key, in the file and as environment overrides.
//!
//! Every invariant is an `assert!`: a panic is what AFL records as a crash.

pub mod config;
pub mod framing;
pub mod prepare;
#[cfg(test)]
mod replay;

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicUsize, Ordering};

/// Counts the bytes held on the heap, so the framing target can check that a
/// message is never buffered past its size limit (the receiver's buffer is
/// private; its footprint is not).
struct CountingAllocator;

static LIVE: AtomicUsize = AtomicUsize::new(0);
static PEAK: AtomicUsize = AtomicUsize::new(0);

fn grew(bytes: usize) {
    let live = LIVE.fetch_add(bytes, Ordering::Relaxed) + bytes;
    PEAK.fetch_max(live, Ordering::Relaxed);
}

// SAFETY: every call is forwarded to `System` unchanged; only counters move.
unsafe impl GlobalAlloc for CountingAllocator {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: the caller's contract is passed on to `System`.
        let ptr = unsafe { System.alloc(layout) };
        if !ptr.is_null() {
            grew(layout.size());
        }
        ptr
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: as above.
        unsafe { System.dealloc(ptr, layout) };
        LIVE.fetch_sub(layout.size(), Ordering::Relaxed);
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // SAFETY: as above.
        let new = unsafe { System.realloc(ptr, layout, new_size) };
        if !new.is_null() {
            LIVE.fetch_sub(layout.size(), Ordering::Relaxed);
            grew(new_size);
        }
        new
    }
}

#[global_allocator]
static ALLOCATOR: CountingAllocator = CountingAllocator;

/// Heap bytes held right now; also restarts the peak from here.
fn heap_mark() -> usize {
    let live = LIVE.load(Ordering::Relaxed);
    PEAK.store(live, Ordering::Relaxed);
    live
}

/// The most heap held since the last [`heap_mark`].
fn heap_peak() -> usize {
    PEAK.load(Ordering::Relaxed)
}

//! The threads that prepare large messages: a fixed pool, one thread per core.
//!
//! Signing (RSA-2048) is the one CPU-heavy step per message. For a message up
//! to [`INLINE_LIMIT`] it runs on the async worker that received it: measured
//! under load, the hand-off to a pool thread and back cost about one context
//! switch per message (3.3 → 2.3 per message) for a job of a fraction of a
//! millisecond. A larger message hashes for longer (11 ms for 10 MB) and would
//! hold up every session on that worker, so it goes to the pool. tokio's
//! blocking pool would do for those, but it grows a
//! thread per concurrent message (tens under load) that each sleep and wake per
//! job; a pool sized to the cores keeps its threads busy back to back while
//! there is work, and so spends the CPU on signing rather than on scheduling.
//! The queue (crossbeam's, already in the build through mail-auth) wakes one
//! idle thread per job; a mutex around a std receiver would wake a second
//! one at every hand-over of the lock. It needs no bound of its own: each
//! session has at most one message in it, and sessions are capped by
//! `smtp.max-connections`.

use std::panic::AssertUnwindSafe;
use std::thread;

use crossbeam_channel::{Receiver, Sender};

type Job = Box<dyn FnOnce() + Send>;

/// Messages up to this size are prepared on the async worker that received
/// them: one RSA-2048 signature and a hash of at most this many bytes, well
/// under a millisecond, and the hand-off to a pool thread and back (two
/// wake-ups, two context switches) cost more CPU than that blocking saves.
pub const INLINE_LIMIT: usize = 256 * 1024;

/// A fixed set of threads running one job at a time each, in arrival order.
pub struct SigningPool {
    jobs: Sender<Job>,
}

impl SigningPool {
    /// A pool of `threads` threads (at least one).
    pub fn new(threads: usize) -> SigningPool {
        let threads = threads.max(1);
        let (jobs, queue) = crossbeam_channel::unbounded::<Job>();
        for n in 0..threads {
            let queue = queue.clone();
            thread::Builder::new()
                .name(format!("ses-relay-sign-{n}"))
                .spawn(move || work(&queue))
                .expect("the signing threads start at startup");
        }
        SigningPool { jobs }
    }

    /// One thread per core this process may use (cgroup CPU limits included).
    pub fn per_core() -> SigningPool {
        SigningPool::new(thread::available_parallelism().map_or(2, |n| n.get()))
    }

    /// Runs `job` for a message of `size` bytes: up to [`INLINE_LIMIT`] on
    /// the calling thread (a panic is caught and gives `None`, as on the
    /// pool), larger ones on the pool.
    pub async fn run_for<R, F>(&self, size: usize, job: F) -> Option<R>
    where
        F: FnOnce() -> R + Send + 'static,
        R: Send + 'static,
    {
        if size <= INLINE_LIMIT {
            return std::panic::catch_unwind(AssertUnwindSafe(job)).ok();
        }
        self.run(job).await
    }

    /// Runs `job` on the pool and waits for its result; `None` if it panicked.
    pub async fn run<R, F>(&self, job: F) -> Option<R>
    where
        F: FnOnce() -> R + Send + 'static,
        R: Send + 'static,
    {
        let (done, result) = tokio::sync::oneshot::channel();
        let job: Job = Box::new(move || {
            let _ = done.send(job());
        });
        self.jobs.send(job).ok()?;
        result.await.ok()
    }
}

/// One pool thread; a new job wakes one idle thread only. Ends when the pool is dropped.
fn work(queue: &Receiver<Job>) {
    while let Ok(job) = queue.recv() {
        // A panicking job drops its result sender (the caller sees None); the thread lives on.
        let _ = std::panic::catch_unwind(AssertUnwindSafe(job));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn runs_jobs_and_survives_a_panic() {
        let pool = SigningPool::new(1);
        assert_eq!(pool.run(|| 6 * 7).await, Some(42));
        // Small jobs run here, large ones on the pool; a panic is caught either way.
        let here = thread::current().name().map(str::to_string);
        let on = |size| pool.run_for(size, || thread::current().name().map(str::to_string));
        assert_eq!(on(INLINE_LIMIT).await, Some(here));
        assert_eq!(
            on(INLINE_LIMIT + 1).await,
            Some(Some("ses-relay-sign-0".to_string()))
        );
        assert_eq!(pool.run_for(1, || -> u32 { panic!("bad key") }).await, None);
        assert_eq!(pool.run(|| -> u32 { panic!("bad key") }).await, None);
        // The only thread is still there.
        let name = pool
            .run(|| thread::current().name().map(str::to_string))
            .await;
        assert_eq!(name, Some(Some("ses-relay-sign-0".to_string())));
    }

    #[tokio::test]
    async fn jobs_run_side_by_side_up_to_the_thread_count() {
        let pool = std::sync::Arc::new(SigningPool::new(2));
        let barrier = std::sync::Arc::new(std::sync::Barrier::new(2));
        // Both jobs wait for each other: this finishes only if two threads run at once.
        let both = async {
            tokio::join!(
                pool.run({
                    let barrier = barrier.clone();
                    move || barrier.wait().is_leader()
                }),
                pool.run({
                    let barrier = barrier.clone();
                    move || barrier.wait().is_leader()
                }),
            )
        };
        let (a, b) = tokio::time::timeout(std::time::Duration::from_secs(10), both)
            .await
            .expect("two jobs ran at once");
        assert_ne!(a.unwrap(), b.unwrap());
    }
}

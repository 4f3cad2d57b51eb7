//! The threads that prepare messages: a fixed pool, one thread per core.
//!
//! Signing (RSA-2048) is the one CPU-heavy step per message and must not run
//! on the async worker threads. tokio's blocking pool would do, but it grows a
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

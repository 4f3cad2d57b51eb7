//! Polling with a deadline, the tests' one way to wait for something to
//! happen: a fixed sleep either waits too long on a fast machine or too
//! little on a busy one. A sleep stays only where the time itself is under
//! test (an idle timeout, a throttle interval, "nothing more comes"), with a
//! comment saying so.

use std::fmt::Display;
use std::future::Future;
use std::time::{Duration, Instant};

/// The first pause between two checks; it doubles up to [`MAX_PAUSE`], so a
/// quick event is seen at once and a slow one costs few checks.
const FIRST_PAUSE: Duration = Duration::from_millis(10);
const MAX_PAUSE: Duration = Duration::from_millis(200);

/// Calls `check` until it returns `Ok`, and returns that value; past
/// `within`, panics with the last `Err` (what was seen instead). For tests
/// without a runtime, or that hold none: it blocks the thread between checks.
pub fn wait_until<T, E: Display>(within: Duration, mut check: impl FnMut() -> Result<T, E>) -> T {
    let deadline = Instant::now() + within;
    let mut pause = FIRST_PAUSE;
    loop {
        let last = match check() {
            Ok(value) => return value,
            Err(last) => last,
        };
        assert!(Instant::now() < deadline, "not within {within:?}: {last}");
        std::thread::sleep(pause);
        pause = (pause * 2).min(MAX_PAUSE);
    }
}

/// [`wait_until`] for async tests: `check` may await, and the pauses let the
/// runtime's other tasks (an in-process relay) run.
pub async fn wait_until_async<T, E: Display, F: Future<Output = Result<T, E>>>(
    within: Duration,
    mut check: impl FnMut() -> F,
) -> T {
    let deadline = Instant::now() + within;
    let mut pause = FIRST_PAUSE;
    loop {
        let last = match check().await {
            Ok(value) => return value,
            Err(last) => last,
        };
        assert!(Instant::now() < deadline, "not within {within:?}: {last}");
        tokio::time::sleep(pause).await;
        pause = (pause * 2).min(MAX_PAUSE);
    }
}

/// `Ok(())` when `done`, else `Err(what)`: for checks with nothing to return.
pub fn ok_if(done: bool, what: impl Display) -> Result<(), String> {
    match done {
        true => Ok(()),
        false => Err(what.to_string()),
    }
}

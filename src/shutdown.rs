//! Shutdown: SIGTERM stops accepting, tells idle sessions `421 4.3.0`, and lets
//! transactions in flight finish within `shutdown-grace`; SIGINT exits fast.
//! Every session task is tracked so the server knows when all have ended.

use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// How the process was asked to stop.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Signal {
    /// SIGTERM: drain gracefully.
    Graceful,
    /// SIGINT: stop now.
    Fast,
}

/// The shared stop switch and the tracker of session tasks.
#[derive(Debug, Clone, Default)]
pub struct Shutdown {
    token: CancellationToken,
    tracker: TaskTracker,
}

impl Shutdown {
    /// A new, untriggered switch.
    pub fn new() -> Shutdown {
        Shutdown::default()
    }

    /// Starts the graceful shutdown.
    pub fn trigger(&self) {
        self.token.cancel();
    }

    /// Whether shutdown has started.
    pub fn is_triggered(&self) -> bool {
        self.token.is_cancelled()
    }

    /// Resolves when shutdown starts.
    pub async fn triggered(&self) {
        self.token.cancelled().await
    }

    /// The tracker that session tasks are spawned on.
    pub fn tracker(&self) -> &TaskTracker {
        &self.tracker
    }
}

/// Waits for SIGTERM or SIGINT (and Ctrl-C where there are no Unix signals).
pub async fn wait_for_signal() -> Signal {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        let (Ok(mut term), Ok(mut int)) = (
            signal(SignalKind::terminate()),
            signal(SignalKind::interrupt()),
        ) else {
            let _ = tokio::signal::ctrl_c().await;
            return Signal::Fast;
        };
        tokio::select! {
            _ = term.recv() => Signal::Graceful,
            _ = int.recv() => Signal::Fast,
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
        Signal::Fast
    }
}

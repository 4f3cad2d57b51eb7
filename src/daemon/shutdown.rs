//! Shutdown: SIGTERM stops accepting, tells idle sessions `421 4.3.0`, and lets
//! transactions in flight finish within `shutdown-grace`; SIGINT exits fast.
//! Every session task is tracked so the server knows when all have ended.

use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// What the process was asked to do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Signal {
    /// SIGTERM: drain gracefully.
    Graceful,
    /// SIGINT: stop now.
    Fast,
    /// SIGHUP: reload the config file.
    Reload,
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

/// Receives SIGTERM, SIGINT and SIGHUP (Ctrl-C alone where there are no Unix signals).
pub struct Signals {
    #[cfg(unix)]
    streams: Option<[tokio::signal::unix::Signal; 3]>,
}

impl Signals {
    /// Installs the handlers; call once, early.
    pub fn install() -> Signals {
        #[cfg(unix)]
        {
            use tokio::signal::unix::{SignalKind, signal};
            let streams = match (
                signal(SignalKind::terminate()),
                signal(SignalKind::interrupt()),
                signal(SignalKind::hangup()),
            ) {
                (Ok(term), Ok(int), Ok(hup)) => Some([term, int, hup]),
                _ => None,
            };
            Signals { streams }
        }
        #[cfg(not(unix))]
        Signals {}
    }

    /// The next signal.
    pub async fn next(&mut self) -> Signal {
        #[cfg(unix)]
        if let Some([term, int, hup]) = &mut self.streams {
            return tokio::select! {
                _ = term.recv() => Signal::Graceful,
                _ = int.recv() => Signal::Fast,
                _ = hup.recv() => Signal::Reload,
            };
        }
        let _ = tokio::signal::ctrl_c().await;
        Signal::Fast
    }
}

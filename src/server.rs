//! Wiring: builds the shared [`Relay`] from a validated config, binds the
//! listeners, runs them, and drains sessions on shutdown.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use aws_sdk_sesv2::config::SharedCredentialsProvider;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio_rustls::TlsAcceptor;

use crate::config::{Config, SesMode, SmtpConfig};
use crate::envelope::TransactionIds;
use crate::forward::Forwarder;
use crate::forward::outbox::Outbox;
use crate::forward::ses::SesForwarder;
use crate::listener::{self, Listener};
use crate::log::Masker;
use crate::prepare::Preparer;
use crate::prepare::dkim::{DkimKeys, KeyError};
use crate::route::Router;
use crate::shutdown::Shutdown;
use crate::tls::TlsError;

/// What every session shares.
pub struct Relay {
    /// `[smtp]` as loaded.
    pub smtp: SmtpConfig,
    /// STARTTLS / implicit TLS, when `[smtp.tls]` is set.
    pub tls: Option<TlsAcceptor>,
    /// Route choice and forwarders.
    pub router: Router,
    /// Received + DKIM + route headers.
    pub preparer: Preparer,
    /// Transaction ids.
    pub ids: TransactionIds,
    /// Log privacy.
    pub masker: Masker,
    /// The stop switch.
    pub shutdown: Shutdown,
}

/// Why the server could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// A DKIM key is missing or unusable.
    #[error(transparent)]
    Key(#[from] KeyError),
    /// The TLS certificate or key is unusable.
    #[error(transparent)]
    Tls(#[from] TlsError),
    /// The outbox directory cannot be created.
    #[error("ses.outbox-dir {path}: {source}")]
    Outbox {
        /// The directory.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// A listener address cannot be bound.
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// The I/O error.
        source: std::io::Error,
    },
}

/// Options that are not configuration (injected by tests).
#[derive(Default)]
pub struct ServerOptions {
    /// Replaces the AWS credential chain (tests against a local SES fake).
    pub ses_credentials: Option<SharedCredentialsProvider>,
}

/// A relay with its listeners bound, ready to run.
pub struct Server {
    relay: Arc<Relay>,
    listeners: Vec<Listener>,
    grace: Duration,
    max_connections: usize,
}

impl Server {
    /// Loads keys and certificates, builds the forwarder, binds every listener.
    pub async fn bind(config: &Config, options: ServerOptions) -> Result<Server, StartError> {
        let dkim = DkimKeys::load(&config.dkim)?;
        let tls = config
            .smtp
            .tls
            .as_ref()
            .map(crate::tls::acceptor)
            .transpose()?;
        let ses: Arc<dyn Forwarder> = match config.ses.mode {
            SesMode::Api => Arc::new(SesForwarder::new(&config.ses, options.ses_credentials).await),
            SesMode::Outbox => Arc::new(
                Outbox::new(&config.ses.outbox_dir, &config.ses.configuration_set).map_err(
                    |source| StartError::Outbox {
                        path: config.ses.outbox_dir.clone(),
                        source,
                    },
                )?,
            ),
        };
        let mut listeners = Vec::new();
        for (addrs, implicit_tls) in [
            (&config.smtp.listen, false),
            (&config.smtp.listen_tls, true),
        ] {
            for addr in addrs {
                let socket = TcpListener::bind(addr)
                    .await
                    .map_err(|source| StartError::Bind {
                        addr: *addr,
                        source,
                    })?;
                listeners.push(Listener {
                    socket,
                    implicit_tls,
                });
            }
        }
        let relay = Relay {
            smtp: config.smtp.clone(),
            tls,
            router: Router::new(ses),
            preparer: Preparer::new(&config.smtp.hostname, dkim, &config.ses.configuration_set),
            ids: TransactionIds::default(),
            masker: Masker::new(config.log.mask_pii),
            shutdown: Shutdown::new(),
        };
        Ok(Server {
            relay: Arc::new(relay),
            listeners,
            grace: config.smtp.shutdown_grace.0,
            max_connections: config.smtp.max_connections,
        })
    }

    /// Addresses actually bound (port 0 resolved): plaintext listeners first, then implicit TLS.
    pub fn local_addrs(&self) -> Vec<(SocketAddr, bool)> {
        self.listeners
            .iter()
            .filter_map(|l| l.socket.local_addr().ok().map(|a| (a, l.implicit_tls)))
            .collect()
    }

    /// The stop switch: trigger it for a graceful shutdown.
    pub fn shutdown(&self) -> Shutdown {
        self.relay.shutdown.clone()
    }

    /// Serves until shutdown is triggered, then waits up to `shutdown-grace`
    /// for sessions to finish. Returns whether all of them did.
    pub async fn run(self) -> bool {
        let slots = Arc::new(Semaphore::new(self.max_connections));
        let mut accepting = tokio::task::JoinSet::new();
        for listener in self.listeners {
            accepting.spawn(listener::accept_loop(
                listener,
                self.relay.clone(),
                slots.clone(),
            ));
        }
        self.relay.shutdown.triggered().await;
        while accepting.join_next().await.is_some() {}
        let tracker = self.relay.shutdown.tracker().clone();
        tracker.close();
        let drained = tokio::time::timeout(self.grace, tracker.wait())
            .await
            .is_ok();
        if !drained {
            tracing::warn!(open = tracker.len(), "shutdown-grace over, sessions cut");
        }
        drained
    }
}

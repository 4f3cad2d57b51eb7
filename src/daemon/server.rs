//! Wiring: builds each part's handles from a validated config (the sessions'
//! [`SessionContext`], the admin API's [`AdminState`], the background tasks),
//! binds the listeners, runs them, reloads what can change on SIGHUP, and
//! drains sessions on shutdown. Nothing imports this module but the `run`
//! command.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use aws_sdk_sesv2::config::SharedCredentialsProvider;
use tokio::net::TcpListener;

use crate::config::{Config, LegacyMode, RuleConfig, SesMode};
use crate::connection::listener::{self, ConnectionSlots, Listener};
use crate::connection::session::SessionContext;
use crate::connection::tls::TlsError;
use crate::control::admin::AdminState;
use crate::control::cutover::{Cutover, CutoverError};
use crate::control::feedback::FeedbackReader;
use crate::daemon::background::{
    self, CutoverRefresh, DkimDnsCheck, GuardFollowsOperators, LegacyProbe, UpstreamHealth,
};
use crate::daemon::shutdown::Shutdown;
use crate::daemon::state::{Reloadable, ReloadableCell};
use crate::log::Masker;
use crate::message::envelope::TransactionIds;
use crate::message::forward::legacy::{LegacyForwarder, LegacySetupError};
use crate::message::forward::outbox::Outbox;
use crate::message::forward::ses::{SesForwarder, SesSetupError};
use crate::message::forward::{Upstream, Upstreams};
use crate::message::prepare::Preparer;
use crate::message::prepare::dkim::{DkimKeys, KeyError};
use crate::message::prepare::pool::SigningPool;
use crate::message::route::Router;
use crate::tools::dns::{SystemResolver, TxtResolver};

/// Why the server could not start (or a reload was refused).
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// The configuration is invalid.
    #[error(transparent)]
    Config(#[from] crate::config::ConfigError),
    /// A DKIM key is missing or unusable.
    #[error(transparent)]
    Key(#[from] KeyError),
    /// The TLS certificate or key is unusable.
    #[error(transparent)]
    Tls(#[from] TlsError),
    /// The legacy route cannot be set up.
    #[error(transparent)]
    Legacy(#[from] LegacySetupError),
    /// The SES route cannot be set up.
    #[error(transparent)]
    Ses(#[from] SesSetupError),
    /// The cutover state file is unreadable.
    #[error(transparent)]
    Cutover(#[from] CutoverError),
    /// A file cannot be read or a directory created.
    #[error("{key} {path}: {source}")]
    File {
        /// The config key naming it.
        key: &'static str,
        /// The path.
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
    /// Replaces the AWS credential chain for SES and SSM (tests against local fakes).
    pub ses_credentials: Option<SharedCredentialsProvider>,
    /// Replaces the system resolver for the DKIM DNS check.
    pub txt_resolver: Option<Arc<dyn TxtResolver>>,
}

/// A relay with its listeners bound, ready to run.
pub struct Server {
    /// What every session shares (the listener hands it to each).
    sessions: Arc<SessionContext>,
    /// What the admin API uses; also the handles reloads and tests act on.
    control: Arc<AdminState>,
    listeners: Vec<Listener>,
    admin: Option<TcpListener>,
    /// The periodic DKIM DNS check, when it is on.
    dns_check: Option<DkimDnsCheck>,
    grace: Duration,
    /// The SES event queue's reader.
    feedback: Option<FeedbackReader>,
    /// The legacy relay's health probe (SMTP legacy route).
    legacy_probe: Option<LegacyProbe>,
}

/// Builds the reloadable part: loads keys, certificates and the admin token.
pub fn build_reloadable(config: &Config) -> Result<Reloadable, StartError> {
    let dkim = DkimKeys::load(&config.dkim)?;
    let tls = config
        .smtp
        .tls
        .as_ref()
        .map(crate::connection::tls::acceptor)
        .transpose()?;
    let admin_token = read_token(&config.admin.token_file, "admin.token-file")?;
    let admin_read_token = read_token(&config.admin.read_token_file, "admin.read-token-file")?;
    let legacy_signs = config.legacy.as_ref().is_some_and(|l| l.dkim_sign);
    Ok(Reloadable {
        smtp: config.smtp.clone(),
        tls,
        preparer: Preparer::new(
            &config.smtp.hostname,
            dkim,
            &config.ses.configuration_set,
            legacy_signs,
        )
        .with_default_tags(&config.ses.tags),
        rules: config.cutover.rules.clone(),
        admin_token,
        admin_read_token,
    })
}

/// A bearer token from its file (trailing newline ignored); none when the
/// key is empty. An empty file gives no token, which refuses every request.
fn read_token(path: &std::path::Path, key: &'static str) -> Result<Option<String>, StartError> {
    if path.as_os_str().is_empty() {
        return Ok(None);
    }
    crate::files::read_token(path).map_err(|source| StartError::File {
        key,
        path: path.to_path_buf(),
        source,
    })
}

fn outbox(
    dir: &std::path::Path,
    configuration_set: Option<&str>,
    key: &'static str,
) -> Result<Arc<dyn Upstream>, StartError> {
    Outbox::new(dir, configuration_set)
        .map(|o| Arc::new(o) as Arc<dyn Upstream>)
        .map_err(|source| StartError::File {
            key,
            path: dir.to_path_buf(),
            source,
        })
}

impl Server {
    /// Loads keys and certificates, builds the forwarders, binds every listener.
    pub async fn bind(config: &Config, options: ServerOptions) -> Result<Server, StartError> {
        crate::metrics::install();
        let live = build_reloadable(config)?;
        let ses: Arc<dyn Upstream> = match config.ses.mode {
            SesMode::Api => {
                Arc::new(SesForwarder::new(&config.ses, options.ses_credentials.clone()).await?)
            }
            SesMode::Outbox => outbox(
                &config.ses.outbox_dir,
                Some(&config.ses.configuration_set),
                "ses.outbox-dir",
            )?,
        };
        let legacy: Option<Arc<dyn Upstream>> = match &config.legacy {
            None => None,
            // The legacy relay knows no configuration set: its .json says none.
            Some(legacy) if legacy.mode == LegacyMode::Outbox => {
                Some(outbox(&legacy.outbox_dir, None, "legacy.outbox-dir")?)
            }
            Some(legacy) => Some(Arc::new(LegacyForwarder::new(
                legacy,
                &config.smtp.hostname,
            )?)),
        };
        let cutover = Cutover::open(config, options.ses_credentials.clone()).await?;
        let rules = config.cutover.rules.iter().map(RuleConfig::rule).collect();
        let upstreams = Upstreams::new(ses, legacy);
        let router = Router::new(upstreams.has_legacy(), rules, cutover.share());
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
        let admin = match config.admin.listen {
            Some(addr) => Some(
                TcpListener::bind(addr)
                    .await
                    .map_err(|source| StartError::Bind { addr, source })?,
            ),
            None => None,
        };
        let legacy_probe = config
            .legacy
            .as_ref()
            .filter(|l| l.mode == LegacyMode::Smtp)
            .map(|l| LegacyProbe {
                relay: l.relay.clone(),
                health: UpstreamHealth::default(),
            });
        let reloadable = ReloadableCell::new(live);
        let router = Arc::new(router);
        let shutdown = Shutdown::new();
        let guard = Arc::new(background::start_guard(config, &cutover));
        let masker = Masker::new(config.log.mask_pii);
        let sessions = Arc::new(SessionContext {
            reloadable: reloadable.clone(),
            router: router.clone(),
            upstreams,
            ids: TransactionIds::default(),
            masker,
            shutdown: shutdown.clone(),
            signer: SigningPool::per_core(),
            guard: guard.clone(),
        });
        let control = Arc::new(AdminState {
            reloadable: reloadable.clone(),
            cutover,
            router,
            guard: guard.clone(),
            legacy_health: legacy_probe.as_ref().map(|p| p.health.clone()),
            shutdown: shutdown.clone(),
        });
        let feedback = if config.feedback.sqs_queue_url.is_empty() {
            None
        } else {
            Some(FeedbackReader {
                client: crate::control::feedback::client(config, options.ses_credentials.clone())
                    .await,
                queue_url: config.feedback.sqs_queue_url.clone(),
                wait: crate::control::feedback::long_poll(config),
                scope: crate::control::feedback::Scope::from_config(config),
                guard,
            })
        };
        let interval = config.dkim.dns_check_interval.0;
        let resolver = match options.txt_resolver {
            Some(resolver) => Some(resolver),
            None if !interval.is_zero() && !config.dkim.keys.is_empty() => {
                match SystemResolver::configured(&config.dkim) {
                    Ok(resolver) => Some(Arc::new(resolver) as Arc<dyn TxtResolver>),
                    Err(err) => {
                        tracing::warn!(error = %err, "no DNS resolver: the DKIM DNS check is off");
                        None
                    }
                }
            }
            None => None,
        };
        let startup_resolver = resolver.as_deref().filter(|_| !interval.is_zero());
        crate::control::dkim_rotation::choose_at_startup(
            reloadable.current().preparer.dkim(),
            startup_resolver,
            config.dkim.require_published,
        )
        .await?;
        Ok(Server {
            sessions,
            control,
            listeners,
            admin,
            dns_check: resolver
                .filter(|_| !interval.is_zero())
                .map(|resolver| DkimDnsCheck {
                    reloadable,
                    resolver,
                    interval,
                }),
            grace: config.smtp.shutdown_grace.0,
            feedback,
            legacy_probe,
        })
    }

    /// SMTP addresses actually bound (port 0 resolved), with whether each is implicit TLS.
    pub fn local_addrs(&self) -> Vec<(SocketAddr, bool)> {
        self.listeners
            .iter()
            .filter_map(|l| l.socket.local_addr().ok().map(|a| (a, l.implicit_tls)))
            .collect()
    }

    /// The admin API's bound address.
    pub fn admin_addr(&self) -> Option<SocketAddr> {
        self.admin.as_ref().and_then(|a| a.local_addr().ok())
    }

    /// The control handles (cutover, router, guard, reloadable config) the
    /// admin API uses: what the `run` command reloads and tests inspect.
    pub fn control(&self) -> Arc<AdminState> {
        self.control.clone()
    }

    /// The stop switch: trigger it for a graceful shutdown.
    pub fn shutdown(&self) -> Shutdown {
        self.control.shutdown.clone()
    }

    /// Serves until shutdown is triggered, then waits up to `shutdown-grace`
    /// for sessions to finish. Returns whether all of them did.
    pub async fn run(self) -> bool {
        // One count for all listeners, against smtp.max-connections as in force
        // at each accept, so SIGHUP changes the cap.
        let slots = ConnectionSlots::new();
        let mut accepting = tokio::task::JoinSet::new();
        for listener in self.listeners {
            accepting.spawn(listener::accept_loop(
                listener,
                self.sessions.clone(),
                slots.clone(),
            ));
        }
        // The admin API outlives the listeners: during the drain `/readyz`
        // answers 503, so the load balancer stops sending new connections.
        let admin = self
            .admin
            .map(|admin| tokio::spawn(crate::control::admin::serve(admin, self.control.clone())));
        let shutdown = self.control.shutdown.clone();
        if let Some(interval) = self.control.cutover.refresh_interval() {
            let refresh = CutoverRefresh {
                cutover: self.control.cutover.clone(),
                interval,
            };
            accepting.spawn(refresh.run(shutdown.clone()));
        }
        let follow = GuardFollowsOperators {
            guard: self.control.guard.clone(),
            cutover: self.control.cutover.clone(),
        };
        accepting.spawn(follow.run(shutdown.clone()));
        if let Some(probe) = self.legacy_probe {
            accepting.spawn(probe.run(shutdown.clone()));
        }
        if let Some(check) = self.dns_check {
            accepting.spawn(check.run(shutdown.clone()));
        }
        if let Some(reader) = self.feedback {
            accepting.spawn(reader.run(shutdown.clone()));
        }
        shutdown.triggered().await;
        while accepting.join_next().await.is_some() {}
        let tracker = shutdown.tracker().clone();
        tracker.close();
        let drained = tokio::time::timeout(self.grace, tracker.wait())
            .await
            .is_ok();
        if !drained {
            tracing::warn!(open = tracker.len(), "shutdown-grace over, sessions cut");
        }
        if let Some(admin) = admin {
            admin.abort();
        }
        drained
    }
}

/// What a reload applied, and what it held back.
#[derive(Debug, Clone)]
pub struct Reloaded {
    /// The configuration now in force: the new file, with the sections and
    /// keys that need a restart as they were running.
    pub config: Config,
    /// The changed keys that need a restart (`ses.configuration-set`), not applied.
    pub held_back: Vec<String>,
}

/// Sections a reload never changes: each runs as loaded at startup, whole,
/// until a restart (so, for one, the `X-SES-CONFIGURATION-SET` header and
/// SendEmail's `ConfigurationSetName` always name the same set).
const RESTART_SECTIONS: &[&str] = &["ses", "legacy", "feedback", "guard", "log"];

/// Keys of reloadable sections that still need a restart.
const RESTART_KEYS: &[(&str, &str)] = &[
    ("smtp", "listen"),
    ("smtp", "listen-tls"),
    ("smtp", "hostname"),
    ("admin", "listen"),
    ("cutover", "store"),
    ("cutover", "ses-percent"),
    ("cutover", "state-file"),
    ("cutover", "ssm-parameter"),
    ("cutover", "endpoint-url"),
    ("cutover", "refresh-interval"),
];

/// Applies a new config file's reloadable parts (allowed clients, limits
/// including `max-connections` and `max-data-memory`, rules, TLS
/// certificates, DKIM keys, admin tokens). A section or key that needs a
/// restart is applied whole or not at all: changed, it is held back, named
/// in [`Reloaded::held_back`], and runs on as before. Everything is built
/// before anything is swapped, so a bad config changes nothing.
pub fn reload(
    control: &AdminState,
    running: &Config,
    new: &Config,
) -> Result<Reloaded, StartError> {
    new.validate()?;
    let before = to_json(running);
    let after = to_json(new);
    let mut held_back = Vec::new();
    for section in RESTART_SECTIONS {
        held_back.extend(changed_keys(section, &before[section], &after[section]));
    }
    for (section, key) in RESTART_KEYS {
        if before[section][key] != after[section][key] {
            held_back.push(format!("{section}.{key}"));
        }
    }
    let mut effective = new.clone();
    effective.ses = running.ses.clone();
    effective.legacy = running.legacy.clone();
    effective.feedback = running.feedback.clone();
    effective.guard = running.guard.clone();
    effective.log = running.log.clone();
    effective.smtp.listen = running.smtp.listen.clone();
    effective.smtp.listen_tls = running.smtp.listen_tls.clone();
    effective.smtp.hostname = running.smtp.hostname.clone();
    effective.admin.listen = running.admin.listen;
    effective.cutover = crate::config::CutoverConfig {
        rules: new.cutover.rules.clone(),
        ..running.cutover.clone()
    };
    let live = build_reloadable(&effective)?;
    // A reload keeps each domain's signing key (never back to an older one).
    live.preparer
        .dkim()
        .carry_over(control.reloadable.current().preparer.dkim());
    crate::control::dkim_rotation::publish(live.preparer.dkim());
    let rules = effective
        .cutover
        .rules
        .iter()
        .map(RuleConfig::rule)
        .collect();
    control.router.set_rules(rules);
    control.reloadable.replace(live);
    Ok(Reloaded {
        config: effective,
        held_back,
    })
}

fn to_json(config: &Config) -> serde_json::Value {
    serde_json::to_value(config).unwrap_or_default()
}

/// `section.key` for every key whose value differs (a section added or
/// removed is named whole).
fn changed_keys(
    section: &str,
    before: &serde_json::Value,
    after: &serde_json::Value,
) -> Vec<String> {
    if before == after {
        return Vec::new();
    }
    match (before.as_object(), after.as_object()) {
        (Some(before), Some(after)) => {
            let mut keys: Vec<&String> = before.keys().chain(after.keys()).collect();
            keys.sort();
            keys.dedup();
            keys.into_iter()
                .filter(|k| before.get(*k) != after.get(*k))
                .map(|k| format!("{section}.{k}"))
                .collect()
        }
        _ => vec![format!("[{section}]")],
    }
}

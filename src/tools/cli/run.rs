//! `ses-relay run`: start the relay, tell systemd, serve until a signal;
//! SIGHUP reloads what can change without a restart.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use crate::config::Config;
use crate::control::admin::AdminState;
use crate::daemon::server::{Server, ServerOptions, StartError};
use crate::daemon::shutdown::{Signal, Signals};

/// `ses-relay run`, with the config file at `path` (the embedded dev config when None).
pub fn run(path: Option<PathBuf>) -> ExitCode {
    // Before validation, which holds smtp.max-connections against the limit.
    let descriptors = crate::daemon::descriptors::raise_descriptor_limit();
    let Some(config) = super::or_report(super::load(path.as_deref())) else {
        return ExitCode::FAILURE;
    };
    crate::log::init(&config.log);
    match descriptors {
        Ok(limit) => tracing::debug!(limit = ?limit, "file descriptor limit"),
        Err(err) => tracing::warn!(error = %err, "cannot raise the file descriptor limit"),
    }
    for warning in config.warnings() {
        tracing::warn!(key = %warning.key, "{}", warning.message);
    }
    let Some(runtime) = super::runtime() else {
        return ExitCode::FAILURE;
    };
    match runtime.block_on(serve(config, path)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            // Once, on stderr (the log): every error's text carries its cause.
            tracing::error!("cannot start: {err}");
            ExitCode::FAILURE
        }
    }
}

async fn serve(config: Config, path: Option<PathBuf>) -> Result<(), StartError> {
    let mut running = config.clone();
    let mut signals = Signals::install();
    // Server::bind installs the metrics recorder, for every caller alike.
    let server = Server::bind(&config, ServerOptions::default()).await?;
    for (addr, implicit_tls) in server.local_addrs() {
        tracing::info!(%addr, implicit_tls, "listening");
    }
    if let Some(addr) = server.admin_addr() {
        tracing::info!(%addr, "admin API listening");
    }
    let control = server.control();
    let cutover = control.cutover.status();
    tracing::info!(ses_percent = cutover.ses_percent, source = %cutover.source, store = ?cutover.store, "cutover");
    // One line that says where mail goes: sending for real, or a dry run.
    tracing::info!(
        "routes: ses {}; legacy {}; cutover store {}; guard {}",
        ses_route(&config),
        legacy_route(&config),
        cutover_store(&config),
        guard_state(&config)
    );
    // Every listener is bound: tell systemd (Type=notify) we are ready.
    if let Err(err) = crate::daemon::notify::notify("READY=1") {
        tracing::warn!(error = %err, "cannot notify systemd");
    }
    let shutdown = server.shutdown();
    let serving = tokio::spawn(server.run());
    let signal = loop {
        match signals.next().await {
            Signal::Reload => reload(&control, &mut running, path.as_deref()),
            other => break other,
        }
    };
    tracing::info!(?signal, "shutting down");
    let _ = crate::daemon::notify::notify("STOPPING=1");
    shutdown.trigger();
    if signal == Signal::Graceful {
        let drained = serving.await.unwrap_or(false);
        tracing::info!(drained, "stopped");
    }
    Ok(())
}

/// `mode=api endpoint=https://email.ap-northeast-1.amazonaws.com`, or `mode=outbox dir=…`.
fn ses_route(config: &Config) -> String {
    match config.ses.mode {
        crate::config::SesMode::Api => {
            let endpoint = if config.ses.endpoint_url.is_empty() {
                format!("https://email.{}.amazonaws.com", config.ses.region)
            } else {
                config.ses.endpoint_url.clone()
            };
            format!(
                "mode=api endpoint={endpoint} configuration-set={}",
                config.ses.configuration_set
            )
        }
        crate::config::SesMode::Outbox => {
            format!("mode=outbox dir={}", config.ses.outbox_dir.display())
        }
    }
}

/// `relay=host:port tls=…`, `mode=outbox dir=…`, or `none`.
fn legacy_route(config: &Config) -> String {
    match &config.legacy {
        None => "none".into(),
        Some(legacy) if legacy.mode == crate::config::LegacyMode::Outbox => {
            format!("mode=outbox dir={}", legacy.outbox_dir.display())
        }
        Some(legacy) => format!("relay={} tls={:?}", legacy.relay, legacy.tls),
    }
}

/// `file path=…` or `ssm parameter=…`.
fn cutover_store(config: &Config) -> String {
    let cutover = &config.cutover;
    match cutover.store {
        crate::config::CutoverStore::File if cutover.state_file.as_os_str().is_empty() => {
            "file (not kept across restarts)".to_string()
        }
        crate::config::CutoverStore::File => {
            format!("file path={}", cutover.state_file.display())
        }
        crate::config::CutoverStore::Ssm => format!("ssm parameter={}", cutover.ssm_parameter),
    }
}

fn guard_state(config: &Config) -> &'static str {
    match (config.guard.enabled, config.legacy.is_some()) {
        (false, _) => "off",
        (true, true) => "armed",
        (true, false) => "alert-only",
    }
}

/// SIGHUP: a bad new config is refused and the running one stays; changed
/// keys that need a restart are named and held back, whole sections at a time.
fn reload(control: &AdminState, running: &mut Config, path: Option<&Path>) {
    let _ = crate::daemon::notify::notify("RELOADING=1");
    let outcome = super::load(path)
        .map_err(StartError::from)
        .and_then(|config| crate::daemon::server::reload(control, running, &config));
    match outcome {
        Ok(reloaded) => {
            if reloaded.held_back.is_empty() {
                tracing::info!(
                    "config reloaded: allowed clients, limits, rules, TLS certificates, DKIM keys, admin tokens"
                );
            } else {
                tracing::warn!(
                    keys = %reloaded.held_back.join(", "),
                    "config reloaded, except these changed keys, which need a restart: their sections \
                     ([ses], [legacy], [feedback], [guard], [log]) or keys run on unchanged, whole"
                );
            }
            *running = reloaded.config;
        }
        Err(err) => {
            tracing::error!(error = %err, "config reload refused; the running config stays")
        }
    }
    let _ = crate::daemon::notify::notify("READY=1");
}

//! The `ses-relay` command: parse the command line, load the config, run.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{CommandFactory, Parser, Subcommand};
use ses_relay::config::{Config, ConfigError};
use ses_relay::server::{Server, ServerOptions};
use ses_relay::shutdown::{Signal, Signals};

const DEFAULT_CONFIG: &str = "/etc/ses-relay/ses-relay.toml";

/// SMTP relay from Postfix to Amazon SES, with DKIM signing and a staged cutover from a legacy relay.
#[derive(Parser)]
#[command(version = ses_relay::build_info::LONG_VERSION, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the relay.
    Run {
        /// Configuration file.
        #[arg(long, default_value = DEFAULT_CONFIG)]
        config: PathBuf,
        /// Use the embedded development config (loopback, demo key, outbox delivery).
        #[arg(long, conflicts_with = "config")]
        dev: bool,
    },
    /// Load and validate a configuration; print every problem, or `ok`.
    CheckConfig {
        /// Configuration file.
        #[arg(long, default_value = DEFAULT_CONFIG)]
        config: PathBuf,
        /// Check the embedded development config.
        #[arg(long, conflicts_with = "config")]
        dev: bool,
    },
    /// Run every check before a cutover step (config, keys, DNS, SES account, identity, legacy relay).
    Preflight {
        /// Configuration file.
        #[arg(long, default_value = DEFAULT_CONFIG)]
        config: PathBuf,
        /// Check the embedded development config (offline checks only; its demo key is never in DNS).
        #[arg(long, conflicts_with = "config")]
        dev: bool,
    },
    /// DKIM tooling.
    Dkim {
        #[command(subcommand)]
        action: DkimAction,
        /// Configuration file.
        #[arg(long, global = true, default_value = DEFAULT_CONFIG)]
        config: PathBuf,
        /// Use the embedded development config.
        #[arg(long, global = true, conflicts_with = "config")]
        dev: bool,
    },
    /// Exit 0 if the running relay's admin API answers /healthz (for container health checks).
    Healthcheck {
        /// Configuration file (for the admin address).
        #[arg(long, default_value = DEFAULT_CONFIG)]
        config: PathBuf,
        /// Use the embedded development config (a relay started with `run --dev`).
        #[arg(long, conflicts_with = "config")]
        dev: bool,
    },
    /// Show or change the SES percentage of a running relay (through its admin API).
    Cutover {
        #[command(subcommand)]
        action: CutoverAction,
        /// Configuration file (for the admin address and token file).
        #[arg(long, global = true, default_value = DEFAULT_CONFIG)]
        config: PathBuf,
        /// Use the embedded development config (a relay started with `run --dev`).
        #[arg(long, global = true, conflicts_with = "config")]
        dev: bool,
    },
    /// Print a shell completion script (bash: `ses-relay completions bash > /etc/bash_completion.d/ses-relay`).
    Completions {
        /// The shell.
        shell: clap_complete::Shell,
    },
    /// Print the manual page (roff), as installed in man section 8.
    Man,
}

#[derive(Subcommand)]
enum DkimAction {
    /// Print, for each key, the TXT record to publish (name and value in 255-byte strings).
    DnsRecord,
}

#[derive(Subcommand)]
enum CutoverAction {
    /// Print the percentage in force, its source, the last change and the rules.
    Status {
        /// Print the admin API's JSON as it is.
        #[arg(long)]
        json: bool,
    },
    /// Send this share of new transactions to SES (0 = all legacy, 100 = all SES).
    Set {
        /// Percentage, 0 to 100, at most two decimals (0.25).
        #[arg(allow_negative_numbers = true)]
        percent: String,
        /// Why (goes into the audit log and the state file).
        #[arg(long)]
        reason: String,
    },
}

fn load(config: Option<&Path>) -> Result<Config, ConfigError> {
    let config = read_config(config)?;
    config.validate()?;
    Ok(config)
}

/// The file at `path`, or the embedded dev config when None; not validated.
fn read_config(path: Option<&Path>) -> Result<Config, ConfigError> {
    match path {
        Some(path) => Config::load_file(path),
        None => Config::load_dev(std::env::vars()),
    }
}

/// What a command names its config by in messages.
fn config_name(path: Option<&Path>) -> String {
    path.map_or("the embedded dev config".to_string(), |p| {
        p.display().to_string()
    })
}

fn print_problems(err: &ConfigError) {
    match err {
        ConfigError::Invalid(problems) => {
            for problem in problems {
                eprintln!("{problem}");
            }
        }
        ConfigError::Parse(message) => eprintln!("{message}"),
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::CheckConfig { config, dev } => match load((!dev).then_some(config.as_path())) {
            Ok(config) => {
                for warning in config.warnings() {
                    eprintln!("warning: {warning}");
                }
                println!("ok");
                ExitCode::SUCCESS
            }
            Err(err) => {
                print_problems(&err);
                ExitCode::FAILURE
            }
        },
        Command::Cutover {
            action,
            config,
            dev,
        } => cutover((!dev).then_some(config.as_path()), action),
        Command::Preflight { config, dev } => preflight((!dev).then_some(config.as_path())),
        Command::Dkim {
            action: DkimAction::DnsRecord,
            config,
            dev,
        } => dns_record((!dev).then_some(config.as_path())),
        Command::Healthcheck { config, dev } => healthcheck((!dev).then_some(config.as_path())),
        Command::Completions { shell } => {
            // Rendered first, then written: clap_complete panics on a write
            // error, and `ses-relay completions bash | head` closes the pipe.
            let mut script = Vec::new();
            clap_complete::generate(shell, &mut Cli::command(), "ses-relay", &mut script);
            match std::io::Write::write_all(&mut std::io::stdout(), &script) {
                Ok(()) => ExitCode::SUCCESS,
                Err(err) if err.kind() == std::io::ErrorKind::BrokenPipe => ExitCode::SUCCESS,
                Err(err) => {
                    eprintln!("cannot write the completions: {err}");
                    ExitCode::FAILURE
                }
            }
        }
        Command::Man => {
            let man = clap_mangen::Man::new(Cli::command()).section("8");
            match man.render(&mut std::io::stdout()) {
                Ok(()) => ExitCode::SUCCESS,
                Err(err) => {
                    eprintln!("cannot write the manual page: {err}");
                    ExitCode::FAILURE
                }
            }
        }
        Command::Run { config, dev } => {
            let path = (!dev).then_some(config);
            let config = match load(path.as_deref()) {
                Ok(config) => config,
                Err(err) => {
                    print_problems(&err);
                    return ExitCode::FAILURE;
                }
            };
            ses_relay::log::init(&config.log);
            for warning in config.warnings() {
                tracing::warn!(key = %warning.key, "{}", warning.message);
            }
            let runtime = match tokio::runtime::Runtime::new() {
                Ok(runtime) => runtime,
                Err(err) => {
                    eprintln!("cannot start the runtime: {err}");
                    return ExitCode::FAILURE;
                }
            };
            match runtime.block_on(run(config, path)) {
                Ok(()) => ExitCode::SUCCESS,
                Err(err) => {
                    // Once, on stderr (the log): every error's text carries its cause.
                    tracing::error!("cannot start: {err}");
                    ExitCode::FAILURE
                }
            }
        }
    }
}

async fn run(config: Config, path: Option<PathBuf>) -> anyhow::Result<()> {
    ses_relay::metrics::install();
    let mut signals = Signals::install();
    let server = Server::bind(&config, ServerOptions::default()).await?;
    for (addr, implicit_tls) in server.local_addrs() {
        tracing::info!(%addr, implicit_tls, "listening");
    }
    if let Some(addr) = server.admin_addr() {
        tracing::info!(%addr, "admin API listening");
    }
    let relay = server.relay();
    tracing::info!(ses_percent = relay.router.ses_percent(), source = %relay.cutover.status().source, "cutover");
    // Every listener is bound: tell systemd (Type=notify) we are ready.
    if let Err(err) = ses_relay::notify::notify("READY=1") {
        tracing::warn!(error = %err, "cannot notify systemd");
    }
    let shutdown = server.shutdown();
    let serving = tokio::spawn(server.run());
    let signal = loop {
        match signals.next().await {
            Signal::Reload => reload(&relay, path.as_deref()),
            other => break other,
        }
    };
    tracing::info!(?signal, "shutting down");
    let _ = ses_relay::notify::notify("STOPPING=1");
    shutdown.trigger();
    if signal == Signal::Graceful {
        let drained = serving.await.unwrap_or(false);
        tracing::info!(drained, "stopped");
    }
    Ok(())
}

/// SIGHUP: a bad new config is refused and the running one stays.
fn reload(relay: &ses_relay::server::Relay, path: Option<&Path>) {
    let _ = ses_relay::notify::notify("RELOADING=1");
    let outcome = load(path)
        .map_err(|err| err.to_string())
        .and_then(|config| {
            ses_relay::server::reload(relay, &config).map_err(|err| err.to_string())
        });
    match outcome {
        Ok(()) => tracing::info!(
            "config reloaded: allowed clients, limits, rules, TLS certificates, DKIM keys, admin token \
             (listeners, [ses], [legacy] and [admin] listen need a restart)"
        ),
        Err(err) => {
            tracing::error!(error = %err, "config reload refused; the running config stays")
        }
    }
    let _ = ses_relay::notify::notify("READY=1");
}

/// `ses-relay cutover status|set`.
fn cutover(path: Option<&Path>, action: CutoverAction) -> ExitCode {
    let config = match read_config(path) {
        Ok(config) => config,
        Err(err) => {
            print_problems(&err);
            return ExitCode::FAILURE;
        }
    };
    let Some(addr) = config.admin.listen else {
        eprintln!(
            "admin.listen is not set in {}: no admin API to talk to",
            config_name(path)
        );
        return ExitCode::FAILURE;
    };
    let table;
    let answer = match action {
        CutoverAction::Status { json } => {
            table = !json;
            let token = ses_relay::admin::client::read_token(&config.admin);
            ses_relay::admin::client::request(addr, "GET", "/cutover", token.as_deref(), None)
        }
        CutoverAction::Set { percent, reason } => {
            let percent = match ses_relay::cutover_cli::parse_percent(&percent) {
                Ok(percent) => percent,
                Err(err) => {
                    eprintln!("{err}");
                    return ExitCode::FAILURE;
                }
            };
            table = true;
            let token = match std::fs::read_to_string(&config.admin.token_file) {
                Ok(token) => token.trim().to_string(),
                Err(err) => {
                    eprintln!(
                        "admin.token-file {}: {err}",
                        config.admin.token_file.display()
                    );
                    return ExitCode::FAILURE;
                }
            };
            let body = serde_json::json!({ "ses_percent": percent, "reason": reason }).to_string();
            ses_relay::admin::client::request(addr, "PUT", "/cutover", Some(&token), Some(&body))
        }
    };
    match answer {
        Ok(answer) if answer.status == 200 => {
            match serde_json::from_str::<serde_json::Value>(&answer.body) {
                Ok(status) if table => print!("{}", ses_relay::cutover_cli::status_table(&status)),
                _ => print!("{}", answer.body),
            }
            ExitCode::SUCCESS
        }
        Ok(answer) => {
            eprint!("HTTP {}: {}", answer.status, answer.body);
            ExitCode::FAILURE
        }
        Err(err) => {
            eprintln!("cannot reach the admin API at {addr}: {err}");
            ExitCode::FAILURE
        }
    }
}

/// `ses-relay preflight`: one line per check, exit 1 on any FAIL.
fn preflight(path: Option<&Path>) -> ExitCode {
    let config = match read_config(path) {
        Ok(config) => config,
        Err(ConfigError::Invalid(problems)) => {
            for problem in problems {
                let finding = ses_relay::preflight::Finding {
                    level: ses_relay::preflight::Level::Fail,
                    check: format!("config {}", problem.key),
                    detail: problem.message,
                };
                println!("{finding}");
            }
            return ExitCode::FAILURE;
        }
        Err(err) => {
            println!("FAIL  config: {err}");
            return ExitCode::FAILURE;
        }
    };
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(runtime) => runtime,
        Err(err) => {
            eprintln!("cannot start the runtime: {err}");
            return ExitCode::FAILURE;
        }
    };
    let findings = runtime.block_on(async {
        match ses_relay::dns::SystemResolver::new() {
            Ok(resolver) => ses_relay::preflight::run(&config, &resolver, None).await,
            Err(err) => {
                let none = ses_relay::dns::StaticResolver::default();
                let mut findings = ses_relay::preflight::run(&config, &none, None).await;
                findings.push(ses_relay::preflight::Finding {
                    level: ses_relay::preflight::Level::Fail,
                    check: "dns resolver".into(),
                    detail: err.to_string(),
                });
                findings
            }
        }
    });
    for finding in &findings {
        println!("{finding}");
    }
    if findings
        .iter()
        .any(|f| f.level == ses_relay::preflight::Level::Fail)
    {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    }
}

/// `ses-relay dkim dns-record`: what to hand to the DNS team.
fn dns_record(path: Option<&Path>) -> ExitCode {
    let config = match read_config(path) {
        Ok(config) => config,
        Err(err) => {
            print_problems(&err);
            return ExitCode::FAILURE;
        }
    };
    let keys = match ses_relay::prepare::dkim::DkimKeys::load(&config.dkim) {
        Ok(keys) => keys,
        Err(err) => {
            eprintln!("{err}");
            return ExitCode::FAILURE;
        }
    };
    for key in keys.keys() {
        let value = key.record_value();
        // A TXT record is made of strings of at most 255 bytes each; resolvers join them.
        let strings: Vec<String> = value
            .as_bytes()
            .chunks(255)
            .map(|chunk| format!("\"{}\"", String::from_utf8_lossy(chunk)))
            .collect();
        println!(
            "{}. 3600 IN TXT ( {} )",
            key.record_name(),
            strings.join(" ")
        );
    }
    ExitCode::SUCCESS
}

/// `ses-relay healthcheck`.
fn healthcheck(path: Option<&Path>) -> ExitCode {
    let addr = read_config(path).ok().and_then(|c| c.admin.listen);
    let Some(addr) = addr else {
        eprintln!("no admin.listen in {}", config_name(path));
        return ExitCode::FAILURE;
    };
    match ses_relay::admin::client::request(addr, "GET", "/healthz", None, None) {
        Ok(answer) if answer.status == 200 => ExitCode::SUCCESS,
        Ok(answer) => {
            eprintln!("HTTP {}", answer.status);
            ExitCode::FAILURE
        }
        Err(err) => {
            eprintln!("{addr}: {err}");
            ExitCode::FAILURE
        }
    }
}

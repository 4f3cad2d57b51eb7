//! The `ses-relay` command: parse the command line, load the config, run.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use ses_relay::config::{Config, ConfigError, EMBEDDED_DEV_CONFIG};
use ses_relay::server::{Server, ServerOptions};
use ses_relay::shutdown::{Signal, wait_for_signal};

const DEFAULT_CONFIG: &str = "/etc/ses-relay/ses-relay.toml";

/// SMTP relay from Postfix to Amazon SES, with DKIM signing.
#[derive(Parser)]
#[command(version, about)]
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
    },
}

fn load(config: Option<&PathBuf>) -> Result<Config, ConfigError> {
    let config = match config {
        Some(path) => Config::load_file(path)?,
        None => Config::load_str(EMBEDDED_DEV_CONFIG, std::env::vars())?,
    };
    config.validate()?;
    Ok(config)
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
        Command::CheckConfig { config } => match load(Some(&config)) {
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
        Command::Run { config, dev } => {
            let config = match load((!dev).then_some(&config)) {
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
            match runtime.block_on(run(config)) {
                Ok(()) => ExitCode::SUCCESS,
                Err(err) => {
                    tracing::error!("{err:#}");
                    eprintln!("ses-relay: {err:#}");
                    ExitCode::FAILURE
                }
            }
        }
    }
}

async fn run(config: Config) -> anyhow::Result<()> {
    ses_relay::metrics::describe();
    let server = Server::bind(&config, ServerOptions::default()).await?;
    for (addr, implicit_tls) in server.local_addrs() {
        tracing::info!(%addr, implicit_tls, "listening");
    }
    // Every listener is bound: tell systemd (Type=notify) we are ready.
    if let Err(err) = ses_relay::notify::notify("READY=1") {
        tracing::warn!(error = %err, "cannot notify systemd");
    }
    let shutdown = server.shutdown();
    let serving = tokio::spawn(server.run());
    let signal = wait_for_signal().await;
    tracing::info!(?signal, "shutting down");
    let _ = ses_relay::notify::notify("STOPPING=1");
    shutdown.trigger();
    if signal == Signal::Graceful {
        let drained = serving.await.unwrap_or(false);
        tracing::info!(drained, "stopped");
    }
    Ok(())
}

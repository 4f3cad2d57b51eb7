//! The `ses-relay` command: parse the command line and call the command's
//! function in [`ses_relay::tools::cli`].

#![forbid(unsafe_code)]

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{CommandFactory, Parser, Subcommand};
use ses_relay::tools::cli;

const DEFAULT_CONFIG: &str = "/etc/ses-relay/ses-relay.toml";

/// SMTP relay from Postfix to Amazon SES, with DKIM signing and a staged cutover from a legacy relay.
#[derive(Parser)]
#[command(version = ses_relay::daemon::build_info::LONG_VERSION, about)]
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
    /// Print a manual page (roff): ses-relay(8), or with `--section 5` ses-relay.toml(5), the configuration reference.
    Man {
        /// The manual section: 8 (the commands) or 5 (the configuration file).
        #[arg(long, default_value = "8", value_parser = ["5", "8"])]
        section: String,
    },
}

#[derive(Subcommand)]
enum DkimAction {
    /// Print, for each key, the TXT record to publish (name and value in 255-byte strings).
    DnsRecord,
    /// Write a new RSA-2048 key (mode 0600, never over an existing file) and print the
    /// TXT record to publish, the [[dkim.keys]] block and the SES BYODKIM command.
    NewKey {
        /// The signing domain (d=).
        #[arg(long)]
        domain: String,
        /// The new selector (s=), e.g. gooid-22-prod.
        #[arg(long)]
        selector: String,
        /// Where to write the PEM private key.
        #[arg(long)]
        out: PathBuf,
    },
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

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Run { config, dev } => cli::run::run((!dev).then_some(config)),
        Command::CheckConfig { config, dev } => cli::check_config((!dev).then_some(&*config)),
        Command::Preflight { config, dev } => cli::preflight::preflight((!dev).then_some(&*config)),
        Command::Dkim {
            action: DkimAction::DnsRecord,
            config,
            dev,
        } => cli::dkim::dns_record((!dev).then_some(&*config)),
        Command::Dkim {
            action:
                DkimAction::NewKey {
                    domain,
                    selector,
                    out,
                },
            ..
        } => cli::dkim::new_key(&domain, &selector, &out),
        Command::Healthcheck { config, dev } => {
            cli::healthcheck::healthcheck((!dev).then_some(&*config))
        }
        Command::Cutover {
            action,
            config,
            dev,
        } => {
            let path = (!dev).then_some(&*config);
            match action {
                CutoverAction::Status { json } => cli::cutover::status(path, json),
                CutoverAction::Set { percent, reason } => {
                    cli::cutover::set(path, &percent, &reason)
                }
            }
        }
        Command::Completions { shell } => cli::completions(shell, Cli::command()),
        Command::Man { section } => cli::man(Cli::command(), &section),
    }
}

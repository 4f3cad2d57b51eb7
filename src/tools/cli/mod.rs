//! The commands of the `ses-relay` binary, one function per command, each
//! returning the process's exit code; `main.rs` only parses the command line
//! and calls them. What a command prints, and on which stream, is part of its
//! interface (operators' scripts and the tests read it).
//!
//! - [`run`]: `run` and its SIGHUP reload;
//! - [`cutover`]: `cutover status|set`, a client of the admin API;
//! - [`preflight`]: `preflight`'s report;
//! - [`dkim`]: `dkim dns-record`, the TXT records to publish; `dkim new-key`;
//! - [`healthcheck`]: `healthcheck`, for container health checks;
//! - [`man`](mod@man): the manual pages, `ses-relay(8)` and `ses-relay.toml(5)`;
//! - here: `check-config`, `completions`, `man`, and reading the config the
//!   way every command does.

pub mod cutover;
mod cutover_text;
pub mod dkim;
pub mod healthcheck;
pub mod man;
pub mod preflight;
pub mod run;

use std::path::Path;
use std::process::ExitCode;

use crate::config::{Config, ConfigError};

/// The file at `path`, or the embedded dev config when None; validated.
pub fn load(path: Option<&Path>) -> Result<Config, ConfigError> {
    let config = read_config(path)?;
    config.validate()?;
    Ok(config)
}

/// The file at `path`, or the embedded dev config when None; not validated.
pub fn read_config(path: Option<&Path>) -> Result<Config, ConfigError> {
    match path {
        Some(path) => Config::load_file(path),
        None => Config::load_dev(std::env::vars()),
    }
}

/// The config as `read` gives it, or its problems on stderr, one a line, and
/// `None`: the caller exits with [`ExitCode::FAILURE`].
fn or_report(read: Result<Config, ConfigError>) -> Option<Config> {
    match read {
        Ok(config) => Some(config),
        Err(err) => {
            print_problems(&err);
            None
        }
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

/// `ses-relay check-config`: every problem, or the warnings and `ok`.
pub fn check_config(path: Option<&Path>) -> ExitCode {
    let Some(config) = or_report(load(path)) else {
        return ExitCode::FAILURE;
    };
    for warning in config.warnings() {
        eprintln!("warning: {warning}");
    }
    println!("ok");
    ExitCode::SUCCESS
}

/// `ses-relay completions SHELL` for the command line `command` describes.
pub fn completions(shell: clap_complete::Shell, mut command: clap::Command) -> ExitCode {
    // Rendered first, then written: clap_complete panics on a write
    // error, and `ses-relay completions bash | head` closes the pipe.
    let mut script = Vec::new();
    clap_complete::generate(shell, &mut command, "ses-relay", &mut script);
    match std::io::Write::write_all(&mut std::io::stdout(), &script) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) if err.kind() == std::io::ErrorKind::BrokenPipe => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("cannot write the completions: {err}");
            ExitCode::FAILURE
        }
    }
}

/// `ses-relay man [--section 5|8]`: a manual page (roff) on stdout,
/// `ses-relay(8)` for `command` or `ses-relay.toml(5)`.
pub fn man(command: clap::Command, section: &str) -> ExitCode {
    let page = match section {
        "5" => man::config_page(),
        _ => man::command_page(command),
    };
    match std::io::Write::write_all(&mut std::io::stdout(), page.as_bytes()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) if err.kind() == std::io::ErrorKind::BrokenPipe => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("cannot write the manual page: {err}");
            ExitCode::FAILURE
        }
    }
}

/// A tokio runtime for a command, or the reason on stderr.
fn runtime() -> Option<tokio::runtime::Runtime> {
    match tokio::runtime::Runtime::new() {
        Ok(runtime) => Some(runtime),
        Err(err) => {
            eprintln!("cannot start the runtime: {err}");
            None
        }
    }
}

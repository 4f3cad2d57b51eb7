//! `ses-relay preflight`: the report of [`crate::tools::preflight::run`], one line
//! per check on stdout, exit 1 on any FAIL. A config that does not validate
//! is reported as FAIL lines too, so the report is the one place to look.

use std::path::Path;
use std::process::ExitCode;

use crate::config::ConfigError;
use crate::tools::dns::{StaticResolver, SystemResolver};
use crate::tools::preflight::{Finding, Level};

/// `ses-relay preflight`.
pub fn preflight(path: Option<&Path>) -> ExitCode {
    let config = match super::read_config(path) {
        Ok(config) => config,
        Err(ConfigError::Invalid(problems)) => {
            for problem in problems {
                let finding = Finding {
                    level: Level::Fail,
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
    let Some(runtime) = super::runtime() else {
        return ExitCode::FAILURE;
    };
    let findings = runtime.block_on(async {
        match SystemResolver::configured(&config.dkim) {
            Ok(resolver) => crate::tools::preflight::run(&config, &resolver, None).await,
            Err(err) => {
                // Every other check still runs: the DNS ones fail on an empty table.
                let none = StaticResolver::default();
                let mut findings = crate::tools::preflight::run(&config, &none, None).await;
                findings.push(Finding {
                    level: Level::Fail,
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
    if findings.iter().any(|f| f.level == Level::Fail) {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    }
}

//! `ses-relay cutover status|set`: a client of the running relay's admin API
//! (`GET` and `PUT /cutover`), printing its answer as a table
//! (`cli::cutover_text`) or as the JSON it is.

use std::path::Path;
use std::process::ExitCode;

use super::cutover_text::{parse_percent, status_table};
use crate::config::Config;
use crate::control::admin::client::{self, Answer};

/// `ses-relay cutover status [--json]`.
pub fn status(path: Option<&Path>, json: bool) -> ExitCode {
    let Some((config, addr)) = admin_api(path) else {
        return ExitCode::FAILURE;
    };
    let token = client::read_token(&config.admin);
    let answer = client::request(addr, "GET", "/cutover", token.as_deref(), None);
    print_answer(addr, answer, !json)
}

/// `ses-relay cutover set PERCENT --reason REASON`.
pub fn set(path: Option<&Path>, percent: &str, reason: &str) -> ExitCode {
    let Some((config, addr)) = admin_api(path) else {
        return ExitCode::FAILURE;
    };
    let percent = match parse_percent(percent) {
        Ok(percent) => percent,
        Err(err) => {
            eprintln!("{err}");
            return ExitCode::FAILURE;
        }
    };
    // A change needs the write token itself: the read token would be refused.
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
    let answer = client::request(addr, "PUT", "/cutover", Some(&token), Some(&body));
    if let Ok(refused) = &answer
        && refused.status == 503
    {
        return not_applied(refused);
    }
    print_answer(addr, answer, true)
}

/// Exit status of `cutover set` when the store's answer never came: the
/// change may still be applied.
pub const EXIT_UNKNOWN: u8 = 3;

/// A `503` to `PUT /cutover`: says whether the change was certainly not
/// applied (exit 1) or may still be (exit [`EXIT_UNKNOWN`]), and what to do.
fn not_applied(answer: &Answer) -> ExitCode {
    let body: serde_json::Value = serde_json::from_str(&answer.body).unwrap_or_default();
    let error = body["error"].as_str().unwrap_or(answer.body.trim());
    let in_force = &body["ses_percent"];
    if body["applied"] == "unknown" {
        eprintln!(
            "applied: unknown. {error}\nThe change was sent to the store, which did not answer: it may \
             still take effect. The relay reads the store until it knows and logs an audit line. Check \
             with `ses-relay cutover status` in a few seconds; in force here now: {in_force}%."
        );
        ExitCode::from(EXIT_UNKNOWN)
    } else {
        eprintln!(
            "applied: false. {error}\nNothing changed anywhere; in force: {in_force}%. Try again \
             when the store answers."
        );
        ExitCode::FAILURE
    }
}

/// The config (not validated: only `[admin]` matters here) and the admin
/// API's address, or why not on stderr.
fn admin_api(path: Option<&Path>) -> Option<(Config, std::net::SocketAddr)> {
    let config = super::or_report(super::read_config(path))?;
    let Some(addr) = config.admin.listen else {
        eprintln!(
            "admin.listen is not set in {}: no admin API to talk to",
            super::config_name(path)
        );
        return None;
    };
    Some((config, addr))
}

/// A 200's body on stdout (as a table when `table` and it is JSON), anything
/// else on stderr with exit 1.
fn print_answer(
    addr: std::net::SocketAddr,
    answer: std::io::Result<Answer>,
    table: bool,
) -> ExitCode {
    match answer {
        Ok(answer) if answer.status == 200 => {
            match serde_json::from_str::<serde_json::Value>(&answer.body) {
                Ok(status) if table => print!("{}", status_table(&status)),
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

//! `ses-relay healthcheck`: exit 0 when the running relay's admin API answers
//! `GET /healthz` with 200 (a container's HEALTHCHECK; no token needed).

use std::path::Path;
use std::process::ExitCode;

/// `ses-relay healthcheck`.
pub fn healthcheck(path: Option<&Path>) -> ExitCode {
    // Not validated: only admin.listen matters here.
    let addr = super::read_config(path).ok().and_then(|c| c.admin.listen);
    let Some(addr) = addr else {
        eprintln!("no admin.listen in {}", super::config_name(path));
        return ExitCode::FAILURE;
    };
    match crate::control::admin::client::request(addr, "GET", "/healthz", None, None) {
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

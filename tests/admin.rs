//! The admin API's tokens seen from outside: the binary with
//! `admin.read-token-file`, the CLI that must send the token, and the check
//! that refuses an admin API off loopback without one.

use std::process::Command;
use std::time::Duration;

mod common;

use common::TempDir;
use common::peers::{free_port, wait_for_port};
use ses_relay::admin::client::request;

fn ses_relay(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_ses-relay"))
        .args(args)
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// The relay binary, killed when dropped.
struct Relay(std::process::Child);

impl Drop for Relay {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn config(dir: &TempDir, smtp: u16, admin: &str, read_token: bool) -> String {
    let read = if read_token {
        format!(
            "read-token-file = \"{}\"\n",
            dir.path("read-token").display()
        )
    } else {
        String::new()
    };
    format!(
        "[smtp]\nlisten = [\"127.0.0.1:{smtp}\"]\n[ses]\nmode = \"outbox\"\nconfiguration-set = \"cs\"\n\
         outbox-dir = \"{out}\"\n[legacy]\nmode = \"outbox\"\noutbox-dir = \"{out}\"\n\
         [cutover]\nses-percent = 10\nstate-file = \"\"\n\
         [admin]\nlisten = \"{admin}\"\ntoken-file = \"{token}\"\n{read}",
        out = dir.path("out").display(),
        token = dir.path("write-token").display(),
    )
}

#[test]
fn reads_need_the_read_token_and_the_cli_sends_it() {
    let dir = TempDir::new("admin-tokens");
    std::fs::write(dir.path("read-token"), "prometheus-reads\n").unwrap();
    std::fs::write(dir.path("write-token"), "operator-writes\n").unwrap();
    let (smtp, admin) = (free_port(), free_port());
    let path = dir.path("relay.toml");
    std::fs::write(
        &path,
        config(&dir, smtp, &format!("127.0.0.1:{admin}"), true),
    )
    .unwrap();
    let config_arg = path.to_str().unwrap();
    let _relay = Relay(
        Command::new(env!("CARGO_BIN_EXE_ses-relay"))
            .args(["run", "--config", config_arg])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap(),
    );
    assert!(wait_for_port(admin, Duration::from_secs(20)));
    let addr = format!("127.0.0.1:{admin}").parse().unwrap();

    for path in ["/metrics", "/cutover", "/"] {
        let answer = request(addr, "GET", path, None, None).unwrap();
        assert_eq!(answer.status, 401, "{path}: {}", answer.body);
        let answer = request(addr, "GET", path, Some("prometheus-reads"), None).unwrap();
        assert_eq!(answer.status, 200, "{path}: {}", answer.body);
    }
    let metrics = request(addr, "GET", "/metrics", Some("operator-writes"), None).unwrap();
    assert_eq!(metrics.status, 200, "the write token reads too");
    assert!(metrics.body.contains("ses_relay_"), "{}", metrics.body);
    assert_eq!(
        request(addr, "GET", "/healthz", None, None).unwrap().status,
        200
    );

    let status = request(addr, "GET", "/cutover", Some("prometheus-reads"), None).unwrap();
    assert!(
        status.body.contains("internationalized-addresses"),
        "the built-in rule is shown: {}",
        status.body
    );

    // The CLI reads the token files from the same config (a 401 would exit 1).
    let (code, stdout, stderr) = ses_relay(&["cutover", "status", "--config", config_arg]);
    assert_eq!(code, 0, "{stdout}{stderr}");
    assert!(stdout.contains("10"), "{stdout}");
    let (code, _, stderr) = ses_relay(&["healthcheck", "--config", config_arg]);
    assert_eq!(code, 0, "{stderr}");
    let (code, stdout, stderr) = ses_relay(&[
        "cutover",
        "set",
        "20",
        "--reason",
        "read token test",
        "--config",
        config_arg,
    ]);
    assert_eq!(code, 0, "{stdout}{stderr}");
    let status = request(addr, "GET", "/cutover", Some("operator-writes"), None).unwrap();
    assert!(
        status.body.contains("\"ses_percent\": 20.0"),
        "{}",
        status.body
    );
}

#[test]
fn an_admin_api_off_loopback_without_a_read_token_is_refused_at_check_config() {
    let dir = TempDir::new("admin-open");
    std::fs::write(dir.path("write-token"), "w\n").unwrap();
    let path = dir.path("relay.toml");
    std::fs::write(&path, config(&dir, free_port(), "0.0.0.0:9925", false)).unwrap();
    let (code, stdout, stderr) = ses_relay(&["check-config", "--config", path.to_str().unwrap()]);
    assert_ne!(code, 0, "{stdout}");
    let report = format!("{stdout}{stderr}");
    assert!(report.contains("admin.read-token-file"), "{report}");
    std::fs::write(dir.path("read-token"), "r\n").unwrap();
    std::fs::write(&path, config(&dir, free_port(), "0.0.0.0:9925", true)).unwrap();
    let (code, stdout, stderr) = ses_relay(&["check-config", "--config", path.to_str().unwrap()]);
    assert_eq!(code, 0, "{stdout}{stderr}");
}

//! The admin API's tokens seen from outside: the binary with
//! `admin.read-token-file`, the CLI that must send the token, and the check
//! that refuses an admin API off loopback without one.

mod common;

use common::relay_process::RelayProcess;
use common::{TempDir, ses_relay, ses_relay_against};
use ses_relay::control::admin::client::request;

fn config(dir: &TempDir, admin: &str, read_token: bool) -> String {
    let read = if read_token {
        format!(
            "read-token-file = \"{}\"\n",
            dir.path("read-token").display()
        )
    } else {
        String::new()
    };
    format!(
        "[smtp]\nlisten = [\"127.0.0.1:0\"]\n[ses]\nmode = \"outbox\"\nconfiguration-set = \"cs\"\n\
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
    let path = dir.path("relay.toml");
    std::fs::write(&path, config(&dir, "127.0.0.1:0", true)).unwrap();
    let config_arg = path.to_str().unwrap();
    let relay = RelayProcess::start(&dir, &path);
    let addr = relay.admin();
    // The CLI reads the same config, told where the relay's admin API went.
    let cli = |args: &[&str]| ses_relay_against(addr, args);

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
    let (code, stdout, stderr) = cli(&["cutover", "status", "--config", config_arg]);
    assert_eq!(code, 0, "{stdout}{stderr}");
    assert!(stdout.contains("10"), "{stdout}");
    let (code, _, stderr) = cli(&["healthcheck", "--config", config_arg]);
    assert_eq!(code, 0, "{stderr}");
    let (code, stdout, stderr) = cli(&[
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
    std::fs::write(&path, config(&dir, "0.0.0.0:9925", false)).unwrap();
    let (code, stdout, stderr) = ses_relay(&["check-config", "--config", path.to_str().unwrap()]);
    assert_ne!(code, 0, "{stdout}");
    let report = format!("{stdout}{stderr}");
    assert!(report.contains("admin.read-token-file"), "{report}");
    std::fs::write(dir.path("read-token"), "r\n").unwrap();
    std::fs::write(&path, config(&dir, "0.0.0.0:9925", true)).unwrap();
    let (code, stdout, stderr) = ses_relay(&["check-config", "--config", path.to_str().unwrap()]);
    assert_eq!(code, 0, "{stdout}{stderr}");
}

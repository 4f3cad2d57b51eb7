//! What a new user and an on-call operator meet first, through the binary:
//! `run --dev` from a fresh copy (no warning, the README's first example on
//! the SES route, the second on legacy), `--version`, completions, the man
//! page, check-config's one pass, short preflight lines, cutover refusals,
//! and the alert rules' `for:`.

mod common;

use std::path::Path;
use std::time::Duration;

use common::relay_process::{RelayCommand, read_log};
use common::wait::wait_until;
use common::{TempDir, ses_relay, ses_relay_with};

#[test]
fn version_shows_commit_and_build_date() {
    let (code, stdout, _) = ses_relay(&["--version"]);
    assert_eq!(code, 0);
    let line = stdout.trim();
    let rest = line
        .strip_prefix(&format!("ses-relay {} (", env!("CARGO_PKG_VERSION")))
        .and_then(|r| r.strip_suffix(')'))
        .unwrap_or_else(|| panic!("{line:?}"));
    let (commit, date) = rest.split_once(' ').expect("commit and date");
    assert!(
        commit == "unknown" || (commit.len() >= 7 && commit.bytes().all(|b| b.is_ascii_hexdigit())),
        "{line}"
    );
    let parts: Vec<&str> = date.split('-').collect();
    assert!(
        parts.len() == 3 && parts[0].len() == 4 && parts[1].len() == 2,
        "{line}"
    );
}

#[test]
fn completions_for_bash_zsh_and_fish() {
    for (shell, marker) in [
        ("bash", "complete -F"),
        ("zsh", "#compdef ses-relay"),
        ("fish", "complete -c ses-relay"),
    ] {
        let (code, stdout, stderr) = ses_relay(&["completions", shell]);
        assert_eq!(code, 0, "{shell}: {stderr}");
        assert!(stdout.contains(marker), "{shell}: {stdout}");
        for sub in ["check-config", "preflight", "cutover", "completions"] {
            assert!(stdout.contains(sub), "{shell} lacks {sub}");
        }
    }
    let (code, _, _) = ses_relay(&["completions", "tcsh"]);
    assert_ne!(code, 0);
}

/// `ses-relay completions bash | head -1`: the reader goes away, and the
/// command ends quietly instead of panicking.
#[test]
fn completions_into_a_closed_pipe_do_not_panic() {
    for args in [&["completions", "bash"][..], &["man"]] {
        let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_ses-relay"))
            .args(args)
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        drop(child.stdout.take());
        let out = child.wait_with_output().unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!stderr.contains("panicked"), "{args:?}: {stderr}");
        assert_ne!(out.status.code(), Some(101), "{args:?}: {stderr}");
    }
}

#[test]
fn man_page_is_roff_in_section_8() {
    let (code, stdout, stderr) = ses_relay(&["man"]);
    assert_eq!(code, 0, "{stderr}");
    assert!(
        stdout.starts_with(".ie") || stdout.contains(".TH"),
        "{stdout}"
    );
    assert!(stdout.contains(".TH ses-relay 8"), "{stdout}");
    assert!(stdout.contains("check\\-config"), "{stdout}");
}

#[test]
fn check_config_reports_every_structural_problem_in_one_run() {
    let dir = TempDir::new("operator");
    let path = dir.path("bad.toml");
    std::fs::write(
        &path,
        "[smtp]\nmax-recipients = \"many\"\nlisten-on = []\nidle-timeout = \"soon\"\n[smpt]\n[cutover]\nses-percent = 120\n",
    )
    .unwrap();
    let (code, stdout, stderr) = ses_relay(&["check-config", "--config", path.to_str().unwrap()]);
    assert_eq!(code, 1);
    assert!(stdout.is_empty(), "{stdout}");
    for key in [
        "smtp.max-recipients: invalid type",
        "smtp.listen-on: unknown field",
        "smtp.idle-timeout:",
        "smpt: unknown field",
        "cutover.ses-percent:",
        "ses.configuration-set:",
    ] {
        assert!(stderr.contains(key), "{key} not reported:\n{stderr}");
    }
    assert!(stderr.lines().all(|l| l.len() < 400), "{stderr}");
}

#[test]
fn preflight_dev_passes_offline_in_short_lines() {
    let (code, stdout, stderr) = ses_relay(&["preflight", "--dev"]);
    assert_eq!(code, 0, "{stdout}{stderr}");
    assert!(!stdout.contains("FAIL"), "{stdout}");
    assert!(
        stdout.contains("PASS  dkim dns gooid-demo._domainkey.goo.ne.jp"),
        "{stdout}"
    );
    assert!(stdout.lines().all(|l| l.chars().count() < 200), "{stdout}");
}

/// Every command that reads the config takes `--dev` like `run`; the
/// embedded config checks clean (no mode warning for the demo key).
#[test]
fn config_commands_accept_dev() {
    let (code, stdout, stderr) = ses_relay(&["check-config", "--dev"]);
    assert_eq!((code, stdout.trim()), (0, "ok"), "{stderr}");
    assert!(!stderr.contains("warning"), "{stderr}");
    let (code, stdout, stderr) = ses_relay(&["dkim", "dns-record", "--dev"]);
    assert_eq!(code, 0, "{stderr}");
    assert!(
        stdout.contains("gooid-demo._domainkey.goo.ne.jp"),
        "{stdout}"
    );
    for args in [
        &["cutover", "--dev", "status"][..],
        &["healthcheck", "--dev"],
    ] {
        let (_, _, stderr) = ses_relay(args);
        assert!(
            !stderr.contains("unexpected argument"),
            "{args:?}: {stderr}"
        );
    }
}

#[test]
fn preflight_names_the_cause_in_one_short_sentence() {
    let dir = TempDir::new("operator");
    let path = dir.path("api.toml");
    let refusing = common::RefusingPort::bind();
    let closed = refusing.addr.port();
    std::fs::write(
        &path,
        format!(
            "[smtp]\nlisten = [\"127.0.0.1:2599\"]\nallowed-clients = [\"127.0.0.0/8\"]\n\
             [[dkim.keys]]\ndomain = \"goo.ne.jp\"\nselector = \"gooid-demo\"\nprivate-key = \"{}\"\n\
             [ses]\nmode = \"api\"\nregion = \"ap-northeast-1\"\nconfiguration-set = \"x\"\n\
             endpoint-url = \"http://127.0.0.1:{closed}\"\n[cutover]\nstate-file = \"\"\n",
            common::demo_key().display()
        ),
    )
    .unwrap();
    let (code, stdout, _) = ses_relay_with(
        &["preflight", "--config", path.to_str().unwrap()],
        |command| {
            command
                .env("AWS_ACCESS_KEY_ID", "AKIDEXAMPLE")
                .env("AWS_SECRET_ACCESS_KEY", "secret")
                .env("AWS_EC2_METADATA_DISABLED", "true");
        },
    );
    assert_eq!(code, 1, "{stdout}");
    assert!(
        stdout.contains(
            "FAIL  ses account: ses:GetAccount: endpoint unreachable: connection refused"
        ),
        "{stdout}"
    );
    for line in stdout.lines() {
        assert!(line.chars().count() < 200, "{} chars: {line}", line.len());
        assert!(
            !line.contains("DispatchFailure") && !line.contains("Query {"),
            "{line}"
        );
    }
}

#[test]
fn cutover_set_refuses_bad_percentages_before_asking_the_relay() {
    for (value, expected) in [
        ("-5", "negative"),
        ("NaN", "is not a number"),
        ("12.345", "more than two decimals"),
        ("101", "above 100"),
    ] {
        let (code, _, stderr) = ses_relay(&["cutover", "--dev", "set", value, "--reason", "x"]);
        assert_eq!(code, 1, "{value}");
        assert!(stderr.contains(expected), "{value}: {stderr}");
        assert!(!stderr.contains("cannot reach"), "{value}: {stderr}");
    }
}

#[test]
fn every_alert_waits_and_ratio_alerts_need_traffic() {
    let rules = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("etc/prometheus/ses-relay.rules.yml"),
    )
    .unwrap();
    let alerts: Vec<&str> = rules.split("- alert: ").skip(1).collect();
    assert!(alerts.len() >= 7, "{}", alerts.len());
    for alert in &alerts {
        let name = alert.lines().next().unwrap();
        // Up to the next rule of the group.
        let body = alert.split("\n      - ").next().unwrap();
        assert!(body.contains("\n        for: "), "{name} has no for:");
        if name.contains("SuccessRatio") {
            assert!(
                body.contains("route:ses_relay_transactions:rate5m >="),
                "{name} has no minimum rate"
            );
        }
    }
    assert!(rules.contains(r#"ses_relay_legacy_errors_total{kind="connect"}"#));
    assert!(rules.contains(r#"result!="refused""#));
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), &target).unwrap();
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dev_mode_on_a_fresh_clone_starts_clean_and_the_readme_examples_take_their_routes() {
    // A fresh clone: the demo files as git checks them out (mode 644).
    let dir = TempDir::new("fresh-clone");
    copy_dir(
        &Path::new(env!("CARGO_MANIFEST_DIR")).join("etc"),
        &dir.0.join("etc"),
    );
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        for file in ["etc/dev/dkim-demo.pem", "etc/dev/admin-token"] {
            std::fs::set_permissions(dir.0.join(file), std::fs::Permissions::from_mode(0o644))
                .unwrap();
        }
    }
    let relay = RelayCommand::args(&dir, &["run", "--dev"])
        .current_dir(&dir.0)
        .env("SES_RELAY__SMTP__LISTEN", "[\"127.0.0.1:0\"]")
        .env("SES_RELAY__ADMIN__LISTEN", "127.0.0.1:0")
        .start();
    let addr = relay.smtp;
    for to in ["b@example.com", "b@legacy.example"] {
        let commands = [
            "EHLO client.test".to_string(),
            "MAIL FROM:<a@goo.ne.jp>".to_string(),
            format!("RCPT TO:<{to}>"),
            "DATA".to_string(),
            "QUIT".to_string(),
        ];
        let message = format!("From: a@goo.ne.jp\r\nTo: {to}\r\nSubject: test\r\n\r\nhello");
        let replies = common::client::smtp(addr, &commands, Some(&message)).await;
        assert!(replies[5].starts_with("250 2.0.0"), "{replies:?}");
    }
    // Both .json files are written before the 250.
    let envelopes: Vec<serde_json::Value> = wait_until(Duration::from_secs(5), || {
        let found: Vec<serde_json::Value> = std::fs::read_dir(dir.0.join("outbox"))
            .map(|entries| {
                entries
                    .filter_map(|e| e.ok())
                    .filter(|e| e.path().extension().is_some_and(|x| x == "json"))
                    .map(|e| serde_json::from_slice(&std::fs::read(e.path()).unwrap()).unwrap())
                    .collect()
            })
            .unwrap_or_default();
        match found.len() {
            2 => Ok(found),
            n => Err(format!("{n} envelopes in the outbox: {found:?}")),
        }
    });
    let route_of = |to: &str| {
        envelopes
            .iter()
            .find(|e| e["rcpt_to"][0] == to)
            .unwrap_or_else(|| panic!("{to} not in the outbox: {envelopes:?}"))
            .clone()
    };
    let ses = route_of("b@example.com");
    assert_eq!(ses["route"], "ses");
    assert_eq!(ses["configuration_set"], "ses-migration-dev-config-set");
    let legacy = route_of("b@legacy.example");
    assert_eq!(legacy["route"], "legacy");
    assert!(legacy.get("configuration_set").is_none(), "{legacy}");
    let log_file = relay.log.clone();
    drop(relay);
    let log = read_log(&log_file);
    assert!(!log.contains("WARN") && !log.contains("ERROR"), "{log}");
    // Not a terminal: no colour codes.
    assert!(!log.contains('\u{1b}'), "{log}");
    assert!(log.contains("route=\"ses\" result=\"delivered\""), "{log}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_port_in_use_is_said_once() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port();
    let (code, _, stderr) = ses_relay_with(&["run", "--dev"], |command| {
        command
            .env("SES_RELAY__SMTP__LISTEN", format!("[\"127.0.0.1:{port}\"]"))
            .env("SES_RELAY__ADMIN__LISTEN", "127.0.0.1:0");
    });
    assert_eq!(code, 1, "{stderr}");
    assert!(
        stderr.contains(&format!("cannot listen on 127.0.0.1:{port}")),
        "{stderr}"
    );
    assert_eq!(stderr.matches("in use").count(), 1, "{stderr}");
}

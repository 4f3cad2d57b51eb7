//! The command line: check-config's report, --version, and startup refusals
//! that name what is wrong.

mod common;

use common::client::{SmtpClient, block_on};
use common::relay_process::RelayCommand;
use common::{TempDir, ses_relay, ses_relay_with};

#[test]
fn check_config_accepts_the_dev_config() {
    let (code, stdout, stderr) = ses_relay(&["check-config", "--config", "etc/ses-relay.dev.toml"]);
    assert_eq!((code, stdout.trim()), (0, "ok"), "{stderr}");
}

#[test]
fn check_config_lists_every_problem_with_its_key() {
    let dir = TempDir::new("cli");
    let path = dir.path("bad.toml");
    std::fs::write(
        &path,
        "[smtp]\nmax-recipients = 100\nallowed-clients = []\n[[dkim.keys]]\ndomain = \"goo.ne.jp\"\nselector = \"s\"\nprivate-key = \"/nonexistent.pem\"\n",
    )
    .unwrap();
    let (code, stdout, stderr) = ses_relay(&["check-config", "--config", path.to_str().unwrap()]);
    assert_eq!(code, 1);
    assert!(stdout.is_empty());
    for key in [
        "smtp.max-recipients",
        "smtp.allowed-clients",
        "dkim.keys[0].private-key",
        "ses.configuration-set",
    ] {
        assert!(stderr.contains(key), "{key} not reported:\n{stderr}");
    }
}

#[test]
fn check_config_names_an_unknown_key() {
    let dir = TempDir::new("cli");
    let path = dir.path("typo.toml");
    std::fs::write(&path, "[smtp]\nlisten-on = [\"127.0.0.1:25\"]\n").unwrap();
    let (code, _, stderr) = ses_relay(&["check-config", "--config", path.to_str().unwrap()]);
    assert_eq!(code, 1);
    assert!(stderr.contains("listen-on"), "{stderr}");
}

#[test]
fn version_and_help() {
    let (code, stdout, _) = ses_relay(&["--version"]);
    assert_eq!(code, 0);
    // `ses-relay 0.1.0 (abc1234 2026-11-23)`: tests/operator.rs checks the rest.
    assert!(
        stdout
            .trim()
            .starts_with(&format!("ses-relay {} (", env!("CARGO_PKG_VERSION"))),
        "{stdout}"
    );
    for sub in [
        &["--help"][..],
        &["run", "--help"],
        &["check-config", "--help"],
    ] {
        let (code, stdout, _) = ses_relay(sub);
        assert_eq!(code, 0, "{sub:?}");
        assert!(
            stdout.contains("--config") || stdout.contains("check-config"),
            "{sub:?}: {stdout}"
        );
    }
}

#[test]
fn a_bad_dkim_key_stops_startup_naming_the_file() {
    let dir = TempDir::new("cli");
    let key = dir.path("broken.pem");
    std::fs::write(
        &key,
        "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n",
    )
    .unwrap();
    let path = dir.path("c.toml");
    std::fs::write(
        &path,
        format!(
            "[smtp]\nlisten = [\"127.0.0.1:0\"]\n[admin]\nlisten = \"127.0.0.1:0\"\n[[dkim.keys]]\ndomain = \"goo.ne.jp\"\nselector = \"s\"\nprivate-key = \"{}\"\n[ses]\nmode = \"outbox\"\nconfiguration-set = \"cs\"\noutbox-dir = \"{}\"\n",
            key.display(),
            dir.path("out").display()
        ),
    )
    .unwrap();
    let (code, _, stderr) = ses_relay(&["run", "--config", path.to_str().unwrap()]);
    assert_eq!(code, 1);
    assert!(stderr.contains(&key.display().to_string()), "{stderr}");
}

#[test]
fn no_region_anywhere_stops_startup_naming_the_key() {
    let dir = TempDir::new("cli");
    let path = dir.path("c.toml");
    std::fs::write(
        &path,
        "[smtp]\nlisten = [\"127.0.0.1:0\"]\n[admin]\nlisten = \"127.0.0.1:0\"\n[ses]\nregion = \"\"\nconfiguration-set = \"cs\"\n",
    )
    .unwrap();
    let (code, _, stderr) =
        ses_relay_with(&["run", "--config", path.to_str().unwrap()], |command| {
            command
                .current_dir(dir.path(""))
                .env_remove("AWS_REGION")
                .env_remove("AWS_DEFAULT_REGION")
                .env_remove("AWS_PROFILE")
                .env("AWS_CONFIG_FILE", dir.path("no-aws-config"))
                .env("AWS_EC2_METADATA_DISABLED", "true");
        });
    assert_eq!(code, 1, "{stderr}");
    assert!(stderr.contains("ses.region"), "{stderr}");
}

/// Under systemd (Type=notify): READY=1 only once SMTP accepts; SIGTERM gives
/// STOPPING=1 and a clean exit.
#[cfg(target_os = "linux")]
#[test]
fn notifies_systemd_ready_after_binding_and_stops_on_sigterm() {
    use std::os::unix::net::UnixDatagram;
    use std::time::Duration;

    let dir = TempDir::new("notify");
    let path = dir.path("c.toml");
    std::fs::write(
        &path,
        format!(
            "[smtp]\nlisten = [\"127.0.0.1:0\"]\n[admin]\nlisten = \"127.0.0.1:0\"\n[ses]\nmode = \"outbox\"\nconfiguration-set = \"cs\"\noutbox-dir = \"{}\"\n",
            dir.path("out").display()
        ),
    )
    .unwrap();
    let socket_path = dir.path("notify.sock");
    let socket = UnixDatagram::bind(&socket_path).unwrap();
    socket
        .set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    let spawned = RelayCommand::run(&dir, &path)
        .env("NOTIFY_SOCKET", &socket_path)
        .spawn();
    let mut buf = [0u8; 256];
    let n = socket.recv(&mut buf).expect("a notification within 30 s");
    assert_eq!(&buf[..n], b"READY=1");
    // Ready means ready: the SMTP port (logged before READY=1) answers at once.
    let relay = spawned.listening();
    let greeting = block_on(async {
        let stream = tokio::net::TcpStream::connect(relay.smtp)
            .await
            .expect("SMTP accepts after READY=1");
        SmtpClient::over(stream).reply().await
    });
    assert!(greeting.starts_with("220 "), "{greeting}");
    let mut process = relay.process;
    process.signal("TERM");
    let n = socket.recv(&mut buf).expect("STOPPING=1 on SIGTERM");
    assert_eq!(&buf[..n], b"STOPPING=1");
    let status = process.exit_within(Duration::from_secs(20));
    assert!(status.success(), "{status}");
}

/// A cutover state file that is there but cannot be read stops startup,
/// naming the file: starting from the config's percentage instead would undo
/// the operator's last setting at every restart.
#[test]
fn an_unreadable_cutover_state_file_stops_startup_naming_it() {
    let dir = TempDir::new("cli-state");
    let state = dir.path("cutover.json");
    // A directory where the file should be: unreadable as a file, also as root.
    std::fs::create_dir_all(&state).unwrap();
    let path = dir.path("c.toml");
    std::fs::write(
        &path,
        format!(
            "[smtp]\nlisten = [\"127.0.0.1:0\"]\n[admin]\nlisten = \"127.0.0.1:0\"\n[ses]\nmode = \"outbox\"\nconfiguration-set = \"cs\"\noutbox-dir = \"{}\"\n[legacy]\nmode = \"outbox\"\noutbox-dir = \"{}\"\n[cutover]\nses-percent = 10\nstate-file = \"{}\"\n",
            dir.path("out").display(),
            dir.path("out").display(),
            state.display()
        ),
    )
    .unwrap();
    // It must refuse to start (within 20 s), not run.
    let mut relay = RelayCommand::run(&dir, &path).spawn();
    let code = relay.exit_code();
    let log = relay.log();
    assert_eq!(code, 1, "{log}");
    assert!(
        log.contains(&format!("cutover.state-file {}", state.display())),
        "{log}"
    );
}

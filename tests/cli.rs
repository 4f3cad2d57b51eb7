//! The command line: check-config's report, --version, and startup refusals
//! that name what is wrong.

use std::process::Command;

mod common;

use common::TempDir;

fn ses_relay(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_ses-relay"))
        .args(args)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

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
    assert_eq!(
        stdout.trim(),
        format!("ses-relay {}", env!("CARGO_PKG_VERSION"))
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

/// Under systemd (Type=notify): READY=1 only once SMTP accepts; SIGTERM gives
/// STOPPING=1 and a clean exit.
#[cfg(target_os = "linux")]
#[test]
fn notifies_systemd_ready_after_binding_and_stops_on_sigterm() {
    use std::io::{BufRead, BufReader};
    use std::os::unix::net::UnixDatagram;
    use std::time::Duration;

    let dir = TempDir::new("notify");
    let port = common::peers::free_port();
    let path = dir.path("c.toml");
    std::fs::write(
        &path,
        format!(
            "[smtp]\nlisten = [\"127.0.0.1:{port}\"]\n[admin]\nlisten = \"127.0.0.1:0\"\n[ses]\nmode = \"outbox\"\nconfiguration-set = \"cs\"\noutbox-dir = \"{}\"\n",
            dir.path("out").display()
        ),
    )
    .unwrap();
    let socket_path = dir.path("notify.sock");
    let socket = UnixDatagram::bind(&socket_path).unwrap();
    socket
        .set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_ses-relay"))
        .args(["run", "--config", path.to_str().unwrap()])
        .env("NOTIFY_SOCKET", &socket_path)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let mut buf = [0u8; 256];
    let n = socket.recv(&mut buf).expect("a notification within 30 s");
    assert_eq!(&buf[..n], b"READY=1");
    // Ready means ready: the SMTP port answers at once.
    let stream =
        std::net::TcpStream::connect(("127.0.0.1", port)).expect("SMTP accepts after READY=1");
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let mut greeting = String::new();
    BufReader::new(&stream).read_line(&mut greeting).unwrap();
    assert!(greeting.starts_with("220 "), "{greeting}");
    drop(stream);
    let killed = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(killed.success());
    let n = socket.recv(&mut buf).expect("STOPPING=1 on SIGTERM");
    assert_eq!(&buf[..n], b"STOPPING=1");
    let status = child.wait().unwrap();
    assert!(status.success(), "{status}");
}

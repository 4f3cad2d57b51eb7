//! The `ses-relay` binary as its own process, its log (stderr) in a file:
//! for tests that read the log as an operator's terminal or journald would
//! get it, or that need the process's own limits (`ulimit`).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::net::{TcpSocket, TcpStream};

use super::TempDir;

/// A relay process, killed on drop.
pub struct SpawnedRelay {
    pub child: Child,
    pub log: PathBuf,
    pub smtp: SocketAddr,
    pub admin: Option<SocketAddr>,
}

/// A config file for the binary: loopback on port 0, the demo key, both
/// routes as outboxes under `dir`, an admin API with the token `test-token`;
/// `smtp_extra` goes into `[smtp]` (with its own `allowed-clients`, that
/// one replaces `127.0.0.0/8`), `extra` after the other sections (which it
/// must not repeat).
pub fn config_file(dir: &TempDir, smtp_extra: &str, extra: &str) -> PathBuf {
    let allowed = match smtp_extra.contains("allowed-clients") {
        true => "",
        false => "allowed-clients = [\"127.0.0.0/8\"]",
    };
    let key = Path::new(env!("CARGO_MANIFEST_DIR")).join("etc/dev/dkim-demo.pem");
    let token = dir.path("admin-token");
    std::fs::write(&token, "test-token\n").unwrap();
    let outbox = dir.path("outbox");
    let text = format!(
        r#"
[smtp]
listen = ["127.0.0.1:0"]
hostname = "relay.test"
{allowed}
max-message-size = "1MiB"
{smtp_extra}

[dkim]
dns-check-interval = "0s"

[[dkim.keys]]
domain = "goo.ne.jp"
selector = "gooid-demo"
private-key = "{key}"

[ses]
mode = "outbox"
configuration-set = "ses-migration-test"
outbox-dir = "{outbox}"

[legacy]
mode = "outbox"
outbox-dir = "{outbox}"

[cutover]
ses-percent = 100.0
state-file = ""

[admin]
listen = "127.0.0.1:0"
token-file = "{token}"

{extra}
"#,
        key = key.display(),
        outbox = outbox.display(),
        token = token.display(),
    );
    let path = dir.path("ses-relay.toml");
    std::fs::write(&path, text).unwrap();
    path
}

impl SpawnedRelay {
    /// Runs `command` (through `sh -c`, so a test can set `ulimit` first;
    /// `$RELAY` is the binary, `$CONFIG` the config) with stderr into
    /// `dir/relay.log`. Returns the process and its log, not waiting.
    pub fn spawn_shell(dir: &TempDir, config: &Path, command: &str) -> (Child, PathBuf) {
        let log = dir.path("relay.log");
        let child = Command::new("sh")
            .args(["-c", command])
            .env("RELAY", env!("CARGO_BIN_EXE_ses-relay"))
            .env("CONFIG", config)
            .env_remove("RUST_LOG")
            .stdout(Stdio::null())
            .stderr(Stdio::from(std::fs::File::create(&log).unwrap()))
            .spawn()
            .unwrap();
        (child, log)
    }

    /// `ses-relay run --config CONFIG`, waited for until it says where it listens.
    pub fn start(dir: &TempDir, config: &Path) -> SpawnedRelay {
        Self::start_with(dir, config, "exec \"$RELAY\" run --config \"$CONFIG\"")
    }

    /// As [`SpawnedRelay::start`], through `command` (see [`SpawnedRelay::spawn_shell`]).
    pub fn start_with(dir: &TempDir, config: &Path, command: &str) -> SpawnedRelay {
        let (mut child, log) = Self::spawn_shell(dir, config, command);
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let text = read_log(&log);
            let smtp = address_after(&text, "INFO listening addr=");
            let admin = address_after(&text, "admin API listening addr=");
            if let (Some(smtp), Some(_)) = (smtp, admin) {
                return SpawnedRelay {
                    child,
                    log,
                    smtp,
                    admin,
                };
            }
            if let Ok(Some(status)) = child.try_wait() {
                panic!("relay exited ({status}) before listening:\n{text}");
            }
            assert!(Instant::now() < deadline, "relay not listening:\n{text}");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// The log so far.
    pub fn log(&self) -> String {
        read_log(&self.log)
    }

    /// Waits until `done` holds for the log; returns the log.
    pub fn wait_for_log(&self, what: &str, done: impl Fn(&str) -> bool) -> String {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let text = self.log();
            if done(&text) {
                return text;
            }
            assert!(
                Instant::now() < deadline,
                "log never showed {what}:\n{text}"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for SpawnedRelay {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The log file's text (lossy: a test looking for raw bytes reads the file itself).
pub fn read_log(path: &Path) -> String {
    String::from_utf8_lossy(&std::fs::read(path).unwrap_or_default()).into_owned()
}

/// The first `ip:port` after `marker` on a line of `text`.
fn address_after(text: &str, marker: &str) -> Option<SocketAddr> {
    text.lines()
        .find_map(|line| line.split_once(marker))
        .and_then(|(_, rest)| rest.split_whitespace().next())
        .and_then(|addr| addr.parse().ok())
}

/// A connection to `relay` from `source` (any of 127.0.0.0/8 on Linux
/// loopback), to play a balancer or a host that is not one.
pub async fn connect_from(source: &str, relay: SocketAddr) -> TcpStream {
    let socket = TcpSocket::new_v4().unwrap();
    socket.bind(format!("{source}:0").parse().unwrap()).unwrap();
    socket.connect(relay).await.unwrap()
}

/// One SMTP reply, every line of it (empty when the relay closed).
pub async fn reply(read: &mut BufReader<TcpStream>) -> String {
    let mut all = String::new();
    loop {
        let mut line = String::new();
        let n = tokio::time::timeout(Duration::from_secs(10), read.read_line(&mut line))
            .await
            .expect("reply in time")
            .unwrap();
        all.push_str(&line);
        if n == 0 || line.as_bytes().get(3) != Some(&b'-') {
            return all;
        }
    }
}

//! The `ses-relay` binary as its own process, for tests that need what only
//! a process has: its log on stderr as journald or a terminal takes it,
//! signals, `ulimit`, systemd's notify socket, real peers that reach it over
//! the network. It listens on `127.0.0.1:0` and the test reads where from
//! the `listening addr=` lines it logs (text or JSON): no port is picked in
//! advance. Killed when dropped.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};
use std::time::Duration;

use super::TempDir;
use super::child::KillOnDrop;
use super::wait::wait_until;

/// How long a relay may take to start, or to write what a test waits for.
const WITHIN: Duration = Duration::from_secs(20);

/// A command line for the binary, its stderr (the log) into `dir/relay.log`.
pub struct RelayCommand {
    command: Command,
    log: PathBuf,
}

impl RelayCommand {
    /// `ses-relay run --config CONFIG`.
    pub fn run(dir: &TempDir, config: &Path) -> RelayCommand {
        let mut command = RelayCommand::new(dir, Command::new(env!("CARGO_BIN_EXE_ses-relay")));
        command.command.arg("run").arg("--config").arg(config);
        command
    }

    /// `ses-relay ARGS`, e.g. `run --dev`.
    pub fn args(dir: &TempDir, args: &[&str]) -> RelayCommand {
        let mut command = RelayCommand::new(dir, Command::new(env!("CARGO_BIN_EXE_ses-relay")));
        command.command.args(args);
        command
    }

    /// `script` through `sh -c`, so a test can set `ulimit` first: `$RELAY`
    /// is the binary, `$CONFIG` the config.
    pub fn shell(dir: &TempDir, config: &Path, script: &str) -> RelayCommand {
        let mut shell = Command::new("sh");
        shell
            .args(["-c", script])
            .env("RELAY", env!("CARGO_BIN_EXE_ses-relay"))
            .env("CONFIG", config);
        RelayCommand::new(dir, shell)
    }

    /// Test credentials and region through the standard AWS chain (as in
    /// production), no instance metadata; no `RUST_LOG`, so the `listening`
    /// lines are there whatever the caller's shell says.
    fn new(dir: &TempDir, mut command: Command) -> RelayCommand {
        command
            .env_remove("RUST_LOG")
            .env("AWS_ACCESS_KEY_ID", "test")
            .env("AWS_SECRET_ACCESS_KEY", "test")
            .env("AWS_REGION", "ap-northeast-1")
            .env("AWS_EC2_METADATA_DISABLED", "true")
            .stdin(Stdio::null())
            .stdout(Stdio::null());
        RelayCommand {
            command,
            log: dir.path("relay.log"),
        }
    }

    pub fn env(mut self, key: &str, value: impl AsRef<std::ffi::OsStr>) -> RelayCommand {
        self.command.env(key, value);
        self
    }

    pub fn env_remove(mut self, key: &str) -> RelayCommand {
        self.command.env_remove(key);
        self
    }

    pub fn current_dir(mut self, dir: &Path) -> RelayCommand {
        self.command.current_dir(dir);
        self
    }

    /// Starts the process without waiting for anything.
    pub fn spawn(mut self) -> Spawned {
        let log = std::fs::File::create(&self.log).unwrap();
        let child = self.command.stderr(Stdio::from(log)).spawn().unwrap();
        Spawned {
            process: KillOnDrop(child),
            log: self.log,
        }
    }

    /// Starts the process and waits until it says where it listens.
    pub fn start(self) -> RelayProcess {
        self.spawn().listening()
    }
}

/// A relay process that may not (yet) listen: for one that must refuse to
/// start, or a test that waits for systemd's `READY=1` first.
pub struct Spawned {
    pub process: KillOnDrop,
    pub log: PathBuf,
}

impl Spawned {
    /// The log so far.
    pub fn log(&self) -> String {
        read_log(&self.log)
    }

    /// The exit code of a process that must end by itself.
    pub fn exit_code(&mut self) -> i32 {
        self.process.exit_within(WITHIN).code().unwrap_or(-1)
    }

    /// Waits until the log names every listener (they are logged before the
    /// `routes:` line); panics if the process ends first.
    pub fn listening(mut self) -> RelayProcess {
        let child = &mut self.process.0;
        let log = &self.log;
        let listeners = wait_until(WITHIN, || {
            let text = read_log(log);
            if let Some(listeners) = listeners(&text) {
                return Ok(listeners);
            }
            if let Ok(Some(status)) = child.try_wait() {
                panic!("relay exited ({status}) before listening:\n{text}");
            }
            Err(format!("relay not listening:\n{text}"))
        });
        RelayProcess {
            smtp: listeners.smtp.expect("an SMTP listener"),
            tls: listeners.tls,
            admin: listeners.admin,
            process: self.process,
            log: self.log,
        }
    }
}

/// A relay process that listens.
pub struct RelayProcess {
    pub process: KillOnDrop,
    pub log: PathBuf,
    /// The (first) plain SMTP listener.
    pub smtp: SocketAddr,
    /// The (first) implicit TLS listener.
    pub tls: Option<SocketAddr>,
    pub admin: Option<SocketAddr>,
}

impl RelayProcess {
    /// `ses-relay run --config CONFIG`, waited for until it listens.
    pub fn start(dir: &TempDir, config: &Path) -> RelayProcess {
        RelayCommand::run(dir, config).start()
    }

    /// The admin API's address (the config must have one).
    pub fn admin(&self) -> SocketAddr {
        self.admin.expect("an admin API listener")
    }

    /// The log so far.
    pub fn log(&self) -> String {
        read_log(&self.log)
    }

    /// Waits until `done` holds for the log; returns the log.
    pub fn wait_for_log(&self, what: &str, done: impl Fn(&str) -> bool) -> String {
        wait_until(WITHIN, || {
            let text = self.log();
            match done(&text) {
                true => Ok(text),
                false => Err(format!("log never showed {what}:\n{text}")),
            }
        })
    }

    /// SIGTERM, and the exit status once the process has drained.
    pub fn stop(mut self) -> ExitStatus {
        self.process.signal("TERM");
        self.process.exit_within(WITHIN)
    }
}

/// Writes `text` to `dir/ses-relay.toml`; its path.
pub fn write_config(dir: &TempDir, text: &str) -> PathBuf {
    let path = dir.path("ses-relay.toml");
    std::fs::write(&path, text).unwrap();
    path
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
    let key = super::demo_key();
    let token = dir.path("admin-token");
    std::fs::write(&token, "test-token\n").unwrap();
    let outbox = dir.path("outbox");
    write_config(
        dir,
        &format!(
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
        ),
    )
}

/// The log file's text (lossy: a test looking for raw bytes reads the file itself).
pub fn read_log(path: &Path) -> String {
    String::from_utf8_lossy(&std::fs::read(path).unwrap_or_default()).into_owned()
}

/// Where a relay listens, as its log says.
#[derive(Default)]
struct Listeners {
    smtp: Option<SocketAddr>,
    tls: Option<SocketAddr>,
    admin: Option<SocketAddr>,
}

/// The listeners named in `log`, once the `routes:` line that follows them
/// is there: `INFO listening addr=… implicit_tls=…` and `admin API
/// listening addr=…` in text, the same fields in JSON.
fn listeners(log: &str) -> Option<Listeners> {
    let mut found = Listeners::default();
    for line in log.lines() {
        let (message, addr, implicit_tls) = match serde_json::from_str::<serde_json::Value>(line) {
            Ok(json) => (
                json["message"].as_str().unwrap_or_default().to_string(),
                json["addr"].as_str().and_then(|a| a.parse().ok()),
                json["implicit_tls"].as_bool() == Some(true),
            ),
            Err(_) => text_fields(line),
        };
        let slot = match message.as_str() {
            "listening" if implicit_tls => &mut found.tls,
            "listening" => &mut found.smtp,
            "admin API listening" => &mut found.admin,
            routes if routes.starts_with("routes: ") => return Some(found),
            _ => continue,
        };
        if slot.is_none() {
            *slot = addr;
        }
    }
    None
}

/// The message, `addr=` and `implicit_tls=` of a text log line.
fn text_fields(line: &str) -> (String, Option<SocketAddr>, bool) {
    let Some((_, rest)) = line.split_once(" INFO ") else {
        return (String::new(), None, false);
    };
    let message = rest.split(" addr=").next().unwrap_or(rest).to_string();
    let addr = rest
        .split_once("addr=")
        .and_then(|(_, after)| after.split_whitespace().next())
        .and_then(|addr| addr.parse().ok());
    (message, addr, rest.contains("implicit_tls=true"))
}

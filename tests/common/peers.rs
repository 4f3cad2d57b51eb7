//! Real third-party peers for the system tests: a private Postfix instance
//! (the client, relayhost pointing at ses-relay) and moto's SES emulator.
//! Each is found on this machine or the test skips with the reason printed;
//! `.ci/run` installs them, so in CI they run.

use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use super::TempDir;
use super::child::KillOnDrop;
use super::wait::{ok_if, wait_until};

/// A port free right now on 127.0.0.1, for the peers that must be told
/// their port before they start and cannot report the one they bound
/// (Postfix's `master.cf`, smtp-sink, dnsmasq, whose `--port=0` turns DNS
/// off). It may be taken between this call and the peer's bind: anything
/// that can listen on port 0 and say where (the relay, moto, the in-process
/// fakes) does that instead.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Waits until something accepts on `port`; `who` names it if nothing does.
pub fn wait_for_port(port: u16, within: Duration, who: &str) {
    wait_until(within, || {
        ok_if(
            TcpStream::connect(("127.0.0.1", port)).is_ok(),
            format!("{who} does not listen on 127.0.0.1:{port}"),
        )
    });
}

/// The Python venv with moto and dkimpy: `$SES_RELAY_TEST_VENV`, else the
/// one `.ci/run` makes.
pub fn venv() -> PathBuf {
    if let Ok(dir) = std::env::var("SES_RELAY_TEST_VENV") {
        return PathBuf::from(dir);
    }
    let cache = std::env::var("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .unwrap_or_else(|_| {
            PathBuf::from(std::env::var("HOME").unwrap_or_else(|_| "/root".into())).join(".cache")
        });
    cache.join("ses-relay-test-venv")
}

/// Whether the system test `test` (its function name) may run, `missing`
/// being why its peers are absent (None: they are here).
///
/// A skip must not pass for a pass: libtest captures only `print!`/`eprint!`
/// and shows them for failures alone, so the line is written to the process's
/// stderr handle directly, which libtest does not capture. `cargo test` (a
/// terminal or not, as in CI) then shows `SKIPPED <test>: <why>` beside the
/// `... ok`. With `SES_RELAY_REQUIRE_PEERS=1` (`.ci/run`) a missing peer fails.
pub fn run_or_skip(test: &str, missing: Option<String>) -> bool {
    use std::io::Write;
    let Some(why) = missing else {
        return true;
    };
    if std::env::var("SES_RELAY_REQUIRE_PEERS").as_deref() == Ok("1") {
        panic!("{test}: peers required but missing: {why}");
    }
    let mut stderr = std::io::stderr().lock();
    let _ = writeln!(stderr, "SKIPPED {test}: {why}");
    let _ = stderr.flush();
    false
}

/// Creates a sending identity and a configuration set in moto through the SES v2 API.
#[allow(dead_code)] // not every test binary uses every helper
pub async fn moto_identity(endpoint: &str, domain: &str, configuration_set: &str) {
    let config = aws_sdk_sesv2::Config::builder()
        .behavior_version(aws_sdk_sesv2::config::BehaviorVersion::latest())
        .region(aws_sdk_sesv2::config::Region::new("ap-northeast-1"))
        .endpoint_url(endpoint)
        .credentials_provider(aws_sdk_sesv2::config::Credentials::new(
            "test", "test", None, None, "test",
        ))
        .build();
    let client = aws_sdk_sesv2::Client::from_conf(config);
    client
        .create_email_identity()
        .email_identity(domain)
        .send()
        .await
        .expect("moto: create identity");
    client
        .create_configuration_set()
        .configuration_set_name(configuration_set)
        .send()
        .await
        .expect("moto: create configuration set");
}

/// Why a peer cannot run here, or None when it can.
pub fn postfix_missing() -> Option<String> {
    if !Path::new("/usr/sbin/postfix").exists() {
        return Some(
            "Postfix is not installed (Debian package postfix; .ci/run installs it)".into(),
        );
    }
    let uid = Command::new("id").arg("-u").output().ok()?;
    if String::from_utf8_lossy(&uid.stdout).trim() != "0" {
        return Some("Postfix instances need root".into());
    }
    None
}

pub fn moto_missing() -> Option<String> {
    let moto = venv().join("bin/moto_server");
    (!moto.exists()).then(|| {
        format!(
            "moto is not installed ({} missing; .ci/run installs it)",
            moto.display()
        )
    })
}

/// A private Postfix instance relaying everything to `relayhost`.
pub struct Postfix {
    pub dir: TempDir,
    pub port: u16,
}

impl Postfix {
    /// Starts an instance on a free 127.0.0.1 port relaying to `relay_port`;
    /// each of `extra` (a `main.cf` line) replaces the base line of its
    /// parameter or adds one.
    pub fn start(relay_port: u16, extra: &[&str]) -> Postfix {
        let dir = TempDir::new("postfix");
        let port = free_port();
        let base = dir.0.clone();
        for sub in ["etc", "spool", "data"] {
            std::fs::create_dir_all(base.join(sub)).unwrap();
        }
        run("chmod", &["755", base.to_str().unwrap()]);
        run("chown", &["postfix:", base.join("data").to_str().unwrap()]);
        std::fs::write(base.join("maillog"), "").unwrap();
        let main_cf = format!(
            "compatibility_level = 3.6\n\
             queue_directory = {d}/spool\n\
             data_directory = {d}/data\n\
             syslog_name = postfix-ses-relay-test\n\
             maillog_file = {d}/maillog\n\
             maillog_file_prefixes = {d}\n\
             myhostname = postfix-{port}.test\n\
             inet_interfaces = 127.0.0.1\n\
             inet_protocols = ipv4\n\
             mydestination =\n\
             local_recipient_maps =\n\
             local_transport = error:local delivery disabled\n\
             alias_maps =\n\
             alias_database =\n\
             biff = no\n\
             mynetworks = 127.0.0.0/8\n\
             smtpd_relay_restrictions = permit_mynetworks, reject\n\
             relayhost = [127.0.0.1]:{relay_port}\n\
             smtpd_tls_security_level = none\n\
             smtp_tls_security_level = may\n\
             minimal_backoff_time = 1s\n\
             maximal_backoff_time = 2s\n\
             queue_run_delay = 1s\n",
            d = base.display()
        );
        // An extra line replaces the base's line of the same parameter
        // (Postfix would take the later one, but warn on every command).
        let name = |line: &str| line.split('=').next().unwrap_or("").trim().to_string();
        let overridden: Vec<String> = extra.iter().map(|line| name(line)).collect();
        let mut main_cf: String = main_cf
            .lines()
            .filter(|line| !overridden.contains(&name(line)))
            .map(|line| format!("{line}\n"))
            .collect();
        for line in extra {
            main_cf.push_str(line);
            main_cf.push('\n');
        }
        std::fs::write(base.join("etc/main.cf"), main_cf).unwrap();
        // No chroot anywhere, so nothing has to be copied into the instance.
        let services = [
            ("pickup", "unix  n - n 60 1", "pickup"),
            ("cleanup", "unix  n - n - 0", "cleanup"),
            ("qmgr", "unix  n - n 300 1", "qmgr"),
            ("tlsmgr", "unix  - - n 1000? 1", "tlsmgr"),
            // For smtp_tls_connection_reuse (docs/quickstart.md's Postfix lines).
            ("tlsproxy", "unix  - - n - 0", "tlsproxy"),
            ("rewrite", "unix  - - n - -", "trivial-rewrite"),
            ("bounce", "unix  - - n - 0", "bounce"),
            ("defer", "unix  - - n - 0", "bounce"),
            ("trace", "unix  - - n - 0", "bounce"),
            ("verify", "unix  - - n - 1", "verify"),
            ("flush", "unix  n - n 1000? 0", "flush"),
            ("proxymap", "unix  - - n - -", "proxymap"),
            ("proxywrite", "unix  - - n - 1", "proxymap"),
            ("smtp", "unix  - - n - -", "smtp"),
            ("relay", "unix  - - n - -", "smtp"),
            ("showq", "unix  n - n - -", "showq"),
            ("error", "unix  - - n - -", "error"),
            ("retry", "unix  - - n - -", "error"),
            ("discard", "unix  - - n - -", "discard"),
            ("local", "unix  - n n - -", "local"),
            ("virtual", "unix  - n n - -", "virtual"),
            ("lmtp", "unix  - - n - -", "lmtp"),
            ("anvil", "unix  - - n - 1", "anvil"),
            ("scache", "unix  - - n - 1", "scache"),
            ("postlog", "unix-dgram n - n - 1", "postlogd"),
        ];
        let mut master_cf = format!("127.0.0.1:{port} inet n - n - - smtpd\n");
        for (name, flags, command) in services {
            master_cf.push_str(&format!("{name} {flags} {command}\n"));
        }
        std::fs::write(base.join("etc/master.cf"), master_cf).unwrap();
        // Postfix pauses on config files younger than a second: backdate them.
        run(
            "touch",
            &[
                "-d",
                "-10 seconds",
                base.join("etc/main.cf").to_str().unwrap(),
                base.join("etc/master.cf").to_str().unwrap(),
            ],
        );
        let status = Command::new("/usr/sbin/postfix")
            .args(["-c", base.join("etc").to_str().unwrap(), "start"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .unwrap();
        assert!(
            status.success(),
            "postfix start failed; see {}/maillog",
            base.display()
        );
        wait_for_port(port, Duration::from_secs(30), "postfix");
        Postfix { dir, port }
    }

    /// Messages still queued.
    pub fn queued(&self) -> usize {
        ["incoming", "active", "deferred", "maildrop"]
            .iter()
            .map(|q| count_files(&self.dir.0.join("spool").join(q)))
            .sum()
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path("maillog")).unwrap_or_default()
    }
}

impl Drop for Postfix {
    fn drop(&mut self) {
        let _ = Command::new("/usr/sbin/postfix")
            .args(["-c", self.dir.path("etc").to_str().unwrap(), "stop"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
    }
}

fn count_files(dir: &Path) -> usize {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return 0;
    };
    entries
        .filter_map(|e| e.ok())
        .map(|e| {
            let path = e.path();
            if path.is_dir() { count_files(&path) } else { 1 }
        })
        .sum()
}

fn run(program: &str, args: &[&str]) {
    let status = Command::new(program).args(args).status().unwrap();
    assert!(status.success(), "{program} {args:?} failed");
}

/// moto's server (SES v2, SSM, SQS) on 127.0.0.1, on the port it bound.
pub struct Moto {
    pub port: u16,
    child: KillOnDrop,
    /// Holds its log (stderr), where it says its port.
    _dir: TempDir,
}

/// A message moto received.
#[derive(Debug)]
pub struct MotoMessage {
    pub source: String,
    pub destinations: Vec<String>,
    pub raw: String,
}

impl Moto {
    /// Starts moto on port 0 and reads the port from its ` * Running on
    /// http://127.0.0.1:PORT` line (werkzeug's, after the bind). The log
    /// goes to a file: a pipe nobody reads would stall moto once full.
    pub fn start() -> Moto {
        let dir = TempDir::new("moto");
        let log = dir.path("moto.log");
        let mut child = KillOnDrop(
            Command::new(venv().join("bin/moto_server"))
                .args(["-H", "127.0.0.1", "-p", "0"])
                .stdout(Stdio::null())
                .stderr(std::fs::File::create(&log).unwrap())
                .spawn()
                .expect("moto_server starts"),
        );
        let port = wait_until(Duration::from_secs(60), || {
            let text = std::fs::read_to_string(&log).unwrap_or_default();
            let port = text
                .split_once("Running on http://127.0.0.1:")
                .and_then(|(_, rest)| rest.split(|c: char| !c.is_ascii_digit()).next())
                .and_then(|port| port.parse::<u16>().ok());
            if let Ok(Some(status)) = child.0.try_wait() {
                panic!("moto exited ({status}):\n{text}");
            }
            port.ok_or_else(|| format!("moto did not say its port:\n{text}"))
        });
        Moto {
            port,
            child,
            _dir: dir,
        }
    }

    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// The server's process id (to stop and continue it: `SIGSTOP`, `SIGCONT`).
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// What moto shows at `GET /moto-api/data.json`.
    pub fn sent(&self) -> Vec<MotoMessage> {
        let body = http_get(self.port, "/moto-api/data.json");
        let data: serde_json::Value = serde_json::from_str(&body).unwrap_or_default();
        data["ses"]["RawMessage"]
            .as_array()
            .map(|all| {
                all.iter()
                    .map(|m| MotoMessage {
                        source: m["source"].as_str().unwrap_or("").to_string(),
                        destinations: m["destinations"]
                            .as_array()
                            .map(|d| {
                                d.iter()
                                    .filter_map(|v| v.as_str().map(String::from))
                                    .collect()
                            })
                            .unwrap_or_default(),
                        raw: m["raw_data"].as_str().unwrap_or("").to_string(),
                    })
                    .collect()
            })
            .unwrap_or_default()
    }
}

fn http_get(port: u16, path: &str) -> String {
    use std::io::{Read, Write};
    let mut stream = TcpStream::connect(("127.0.0.1", port)).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut response = Vec::new();
    let _ = stream.read_to_end(&mut response);
    let text = String::from_utf8_lossy(&response).to_string();
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or(("", ""));
    if !head
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked")
    {
        return body.to_string();
    }
    let mut out = String::new();
    let mut rest = body;
    while let Some((size, tail)) = rest.split_once("\r\n") {
        let n = usize::from_str_radix(size.trim(), 16).unwrap_or(0);
        if n == 0 || tail.len() < n {
            break;
        }
        out.push_str(&tail[..n]);
        rest = tail[n..].trim_start_matches("\r\n");
    }
    out
}

/// Verifies a message with dkimpy (an independent implementation), the key
/// taken from `record`. Returns dkimpy's verdict line.
pub fn dkimpy_verify(message: &[u8], record: &str) -> (bool, String) {
    use std::io::Write;
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/peers/dkim_verify.py");
    let mut child = Command::new(venv().join("bin/python"))
        .arg(script)
        .arg(record)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("dkimpy verifier starts");
    child.stdin.take().unwrap().write_all(message).unwrap();
    let out = child.wait_with_output().unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text.trim().to_string())
}

//! The `ses-relay` binary as its own process, for tests with real peers:
//! started on a config file, its stdout and stderr (the log) in files,
//! read over its admin API, killed when dropped.

use std::process::{Child, Command, Stdio};
use std::time::Duration;

use super::TempDir;
use super::peers::wait_for_port;

/// The relay binary, killed when dropped.
pub struct RelayProcess(Child);

impl RelayProcess {
    /// Writes `config` to `dir/ses-relay.toml`, runs the binary on it with
    /// test credentials from the standard AWS chain (as in production), and
    /// waits until it listens on `port`. Log: `dir/relay.err`.
    pub fn start(dir: &TempDir, config: &str, port: u16) -> RelayProcess {
        let path = dir.path("ses-relay.toml");
        std::fs::write(&path, config).unwrap();
        let child = Command::new(env!("CARGO_BIN_EXE_ses-relay"))
            .args(["run", "--config", path.to_str().unwrap()])
            .env("AWS_ACCESS_KEY_ID", "test")
            .env("AWS_SECRET_ACCESS_KEY", "test")
            .env("AWS_REGION", "ap-northeast-1")
            .env("AWS_EC2_METADATA_DISABLED", "true")
            .stdout(Stdio::from(
                std::fs::File::create(dir.path("relay.log")).unwrap(),
            ))
            .stderr(Stdio::from(
                std::fs::File::create(dir.path("relay.err")).unwrap(),
            ))
            .spawn()
            .expect("ses-relay starts");
        let relay = RelayProcess(child);
        assert!(
            wait_for_port(port, Duration::from_secs(30)),
            "ses-relay did not listen: {}",
            log(dir)
        );
        relay
    }
}

impl Drop for RelayProcess {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// What the relay started in `dir` logged (it logs to stderr).
pub fn log(dir: &TempDir) -> String {
    std::fs::read_to_string(dir.path("relay.err")).unwrap_or_default()
}

/// The value of the line of the admin API's `/metrics` (on `admin`) that
/// starts with `series` (name and labels, then a space); None when absent
/// or when the relay does not answer.
pub fn metric(admin: u16, series: &str) -> Option<f64> {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect(("127.0.0.1", admin)).ok()?;
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .ok()?;
    stream
        .write_all(b"GET /metrics HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
        .ok()?;
    let mut text = String::new();
    stream.read_to_string(&mut text).ok()?;
    text.lines()
        .find_map(|l| l.strip_prefix(series))
        .and_then(|v| v.trim().parse().ok())
}

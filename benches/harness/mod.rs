//! What the end-to-end benchmarks share (`benches/load.rs`,
//! `benches/guard_memory.rs`): a lean SES v2 stand-in, the `ses-relay` binary
//! started on a config of its own, an SMTP client that sends as Postfix does
//! (one connection, many transactions, MAIL/RCPT/DATA pipelined), and the
//! relay process's CPU and memory read from /proc.

#![allow(dead_code)] // each benchmark uses its own part

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{TcpListener, TcpStream};

/// A lean SES v2 stand-in: reads the request, waits `latency`, answers a
/// MessageId. Returns its address and the count of requests served.
pub async fn fake_ses(latency: Duration) -> (SocketAddr, Arc<AtomicU64>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let served = Arc::new(AtomicU64::new(0));
    let count = served.clone();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let count = count.clone();
            tokio::spawn(async move {
                let service = hyper::service::service_fn(
                    move |request: hyper::Request<hyper::body::Incoming>| {
                        let count = count.clone();
                        async move {
                            let _ = request.into_body().collect().await;
                            if !latency.is_zero() {
                                tokio::time::sleep(latency).await;
                            }
                            let n = count.fetch_add(1, Ordering::Relaxed);
                            let body = format!("{{\"MessageId\":\"bench-{n}\"}}");
                            Ok::<_, Infallible>(
                                hyper::Response::builder()
                                    .header("content-type", "application/json")
                                    .body(Full::new(Bytes::from(body)))
                                    .unwrap(),
                            )
                        }
                    },
                );
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(hyper_util::rt::TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    (addr, served)
}

/// Message number `i` of about `size` bytes, dot-terminated for DATA.
pub fn message(size: usize, i: usize) -> String {
    let mut msg = format!(
        "From: Goo News <news@goo.ne.jp>\r\nTo: user{i}@example.com\r\nSubject: load {i}\r\nMessage-ID: <load-{i}@goo.ne.jp>\r\nMIME-Version: 1.0\r\nContent-Type: text/plain; charset=UTF-8\r\n\r\n"
    );
    while msg.len() + 78 <= size {
        msg.push_str(
            "Lorem ipsum dolor sit amet, consectetur adipiscing elit, sed do eiusmod tem\r\n",
        );
    }
    msg.push_str(".\r\n");
    msg
}

/// One SMTP connection to the relay, reused for many transactions as
/// Postfix reuses its connections.
pub struct Session {
    reader: BufReader<OwnedReadHalf>,
    write: OwnedWriteHalf,
    line: String,
}

impl Session {
    /// Connects, reads the greeting and says EHLO.
    pub async fn open(addr: SocketAddr) -> Session {
        let stream = TcpStream::connect(addr)
            .await
            .expect("connect to the relay");
        let _ = stream.set_nodelay(true);
        let (read, write) = stream.into_split();
        let mut session = Session {
            reader: BufReader::new(read),
            write,
            line: String::new(),
        };
        session.reply().await;
        session
            .write
            .write_all(b"EHLO load.test\r\n")
            .await
            .unwrap();
        session.reply().await;
        session
    }

    /// The code of the next reply (0 when the connection closed).
    async fn reply(&mut self) -> u16 {
        loop {
            self.line.clear();
            if self.reader.read_line(&mut self.line).await.unwrap_or(0) == 0 {
                return 0;
            }
            if self.line.as_bytes().get(3) != Some(&b'-') {
                return self.line.get(..3).and_then(|c| c.parse().ok()).unwrap_or(0);
            }
        }
    }

    /// One transaction to `user<i>@example.com` carrying `body` (as
    /// [`message`] makes it): the time from the end of DATA to the final
    /// reply, and whether that reply was 250.
    pub async fn send(&mut self, i: usize, body: &str) -> (Duration, bool) {
        // As Postfix pipelines: MAIL (with SIZE=), RCPT, DATA in one write.
        let head = format!(
            "MAIL FROM:<news@goo.ne.jp> SIZE={}\r\nRCPT TO:<user{i}@example.com>\r\nDATA\r\n",
            body.len()
        );
        self.write.write_all(head.as_bytes()).await.unwrap();
        for _ in 0..3 {
            self.reply().await;
        }
        self.write.write_all(body.as_bytes()).await.unwrap();
        let sent = Instant::now();
        let code = self.reply().await;
        (sent.elapsed(), code == 250)
    }

    /// Says QUIT.
    pub async fn quit(mut self) {
        let _ = self.write.write_all(b"QUIT\r\n").await;
    }
}

/// utime + stime of a process, in seconds.
pub fn cpu_seconds(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let after = stat.rsplit_once(')').map_or("", |(_, rest)| rest);
    let fields: Vec<&str> = after.split_whitespace().collect();
    let ticks: f64 = fields.get(11).and_then(|v| v.parse().ok()).unwrap_or(0.0)
        + fields.get(12).and_then(|v| v.parse().ok()).unwrap_or(0.0);
    ticks / clock_ticks()
}

fn clock_ticks() -> f64 {
    std::process::Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8_lossy(&o.stdout).trim().parse().ok())
        .unwrap_or(100.0)
}

/// A memory line of /proc/PID/status (`VmRSS`, `VmHWM`), in MiB.
fn status_mib(pid: u32, field: &str) -> f64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
        .and_then(|v| v.split_whitespace().next()?.parse::<f64>().ok())
        .map_or(0.0, |kb| kb / 1024.0)
}

/// Peak resident set (VmHWM) of a process, in MiB.
pub fn peak_rss_mib(pid: u32) -> f64 {
    status_mib(pid, "VmHWM")
}

/// Resident set now (VmRSS) of a process, in MiB.
pub fn rss_mib(pid: u32) -> f64 {
    status_mib(pid, "VmRSS")
}

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Starts the relay binary on 127.0.0.1:`port` (admin on `admin`) with the
/// demo RSA-2048 key, SES at `ses`, and `extra` appended to its config (TOML
/// tables of their own); waits until it listens. `SES_RELAY_LOAD_BIN=path`
/// runs another build (an A/B comparison of two commits).
pub fn start_relay(ses: SocketAddr, port: u16, admin: u16, extra: &str) -> std::process::Child {
    let dir = std::env::temp_dir().join(format!("ses-relay-load-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let config = dir.join(format!("relay-{port}.toml"));
    std::fs::write(
        &config,
        format!(
            r#"
[smtp]
listen = ["127.0.0.1:{port}"]
hostname = "relay.load"
max-connections = 2000
[[dkim.keys]]
domain = "goo.ne.jp"
selector = "gooid-21-prod"
private-key = "{key}"
[dkim]
dns-check-interval = "0s"
[ses]
mode = "api"
endpoint-url = "http://{ses}"
configuration-set = "load-set"
[admin]
listen = "127.0.0.1:{admin}"
[log]
level = "warn"
{extra}
"#,
            key = concat!(env!("CARGO_MANIFEST_DIR"), "/etc/dev/dkim-demo.pem"),
        ),
    )
    .unwrap();
    let binary = std::env::var("SES_RELAY_LOAD_BIN")
        .unwrap_or_else(|_| env!("CARGO_BIN_EXE_ses-relay").into());
    let child = std::process::Command::new(binary)
        .args(["run", "--config", config.to_str().unwrap()])
        .env("AWS_ACCESS_KEY_ID", "load")
        .env("AWS_SECRET_ACCESS_KEY", "load")
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::inherit())
        .spawn()
        .expect("start ses-relay");
    let deadline = Instant::now() + Duration::from_secs(30);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "ses-relay did not listen");
        std::thread::sleep(Duration::from_millis(20));
    }
    child
}

/// Stops the relay with SIGTERM (it drains) and waits for it.
pub fn stop_relay(mut child: std::process::Child) {
    let _ = std::process::Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status();
    let _ = child.wait();
}

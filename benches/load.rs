//! End-to-end load harness.
//!
//! ```text
//! cargo bench --bench load -- --messages N --connections C --size BYTES --ses-latency 50ms [--target HOST:PORT] [--rate R]
//! ```
//!
//! Without `--target` it starts the `ses-relay` binary (release build) as a
//! child process, with the demo RSA-2048 key and its SES endpoint pointed at a
//! fast in-process SES fake (answering after `--ses-latency`), then sends N
//! messages over C connections, each connection reusing itself as Postfix
//! does. It prints messages/s, latency p50/p99/max (end of DATA to final
//! reply), the relay's CPU seconds per message and peak RSS (from /proc), and
//! one bare RSA-2048 signature's CPU time measured in the same run, the
//! yardstick for "CPU per message". `--rate R` paces the load at R messages/s
//! (for added-latency measurements). With `--target` it drives a relay that
//! is already running (no CPU/RSS figures). `SES_RELAY_LOAD_BIN=path` runs
//! another build of the relay instead of this one: alternate two builds in one
//! invocation to compare them.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};

struct Args {
    messages: usize,
    connections: usize,
    size: usize,
    ses_latency: Duration,
    target: Option<SocketAddr>,
    rate: Option<f64>,
}

fn parse_args() -> Args {
    let mut args = Args {
        messages: 10_000,
        connections: 20,
        size: 4096,
        ses_latency: Duration::ZERO,
        target: None,
        rate: None,
    };
    let mut it = std::env::args().skip(1);
    while let Some(arg) = it.next() {
        let mut value = || it.next().unwrap_or_else(|| panic!("{arg} needs a value"));
        match arg.as_str() {
            "--messages" => args.messages = value().parse().expect("--messages N"),
            "--connections" => args.connections = value().parse().expect("--connections C"),
            "--size" => args.size = value().parse().expect("--size BYTES"),
            "--ses-latency" => {
                args.ses_latency = humantime::parse_duration(&value()).expect("--ses-latency 50ms")
            }
            "--target" => args.target = Some(value().parse().expect("--target HOST:PORT")),
            "--rate" => args.rate = Some(value().parse().expect("--rate R")),
            "--bench" => {} // cargo bench passes this
            other => panic!("unknown argument {other}"),
        }
    }
    args
}

/// A lean SES v2 stand-in: reads the request, waits, answers a MessageId.
async fn fake_ses(latency: Duration) -> (SocketAddr, Arc<AtomicU64>) {
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

fn message(size: usize, i: usize) -> String {
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

async fn reply(reader: &mut BufReader<tokio::net::tcp::OwnedReadHalf>, line: &mut String) -> u16 {
    loop {
        line.clear();
        if reader.read_line(line).await.unwrap_or(0) == 0 {
            return 0;
        }
        if line.as_bytes().get(3) != Some(&b'-') {
            return line.get(..3).and_then(|c| c.parse().ok()).unwrap_or(0);
        }
    }
}

/// One connection sending its share of messages; returns latencies and failures.
async fn client(
    addr: SocketAddr,
    ids: Vec<usize>,
    size: usize,
    pace: Option<Duration>,
    start: Instant,
) -> (Vec<Duration>, usize) {
    let stream = TcpStream::connect(addr)
        .await
        .expect("connect to the relay");
    let _ = stream.set_nodelay(true);
    let (read, mut write) = stream.into_split();
    let mut reader = BufReader::new(read);
    let mut line = String::new();
    reply(&mut reader, &mut line).await;
    write.write_all(b"EHLO load.test\r\n").await.unwrap();
    reply(&mut reader, &mut line).await;
    let mut latencies = Vec::with_capacity(ids.len());
    let mut failed = 0;
    for i in ids {
        if let Some(pace) = pace {
            let due = start + pace * i as u32;
            tokio::time::sleep_until(due.into()).await;
        }
        // As Postfix pipelines: MAIL (with SIZE=), RCPT, DATA in one write.
        let body = message(size, i);
        let head = format!(
            "MAIL FROM:<news@goo.ne.jp> SIZE={}\r\nRCPT TO:<user{i}@example.com>\r\nDATA\r\n",
            body.len()
        );
        write.write_all(head.as_bytes()).await.unwrap();
        for _ in 0..3 {
            reply(&mut reader, &mut line).await;
        }
        write.write_all(body.as_bytes()).await.unwrap();
        let sent = Instant::now();
        let code = reply(&mut reader, &mut line).await;
        latencies.push(sent.elapsed());
        if code != 250 {
            failed += 1;
        }
    }
    let _ = write.write_all(b"QUIT\r\n").await;
    (latencies, failed)
}

/// utime + stime of a process, in seconds.
fn cpu_seconds(pid: u32) -> f64 {
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

/// Peak resident set (VmHWM) of a process, in MiB.
fn peak_rss_mib(pid: u32) -> f64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.split_whitespace().next()?.parse::<f64>().ok())
        .map_or(0.0, |kb| kb / 1024.0)
}

/// CPU seconds of one bare RSA-2048 signature, measured here and now.
fn rsa_signature_seconds() -> f64 {
    use ses_relay::config::{DkimConfig, DkimKeyConfig};
    let config = DkimConfig {
        keys: vec![DkimKeyConfig {
            domain: "goo.ne.jp".into(),
            selector: "s".into(),
            private_key: concat!(env!("CARGO_MANIFEST_DIR"), "/etc/dev/dkim-demo.pem").into(),
            created: None,
        }],
        ..DkimConfig::default()
    };
    let keys = ses_relay::prepare::dkim::DkimKeys::load(&config).unwrap();
    let key = &keys.keys()[0];
    let headers = vec!["From".to_string()];
    let n = 2000;
    let started = thread_cpu_seconds();
    for _ in 0..n {
        std::hint::black_box(key.sign(b"From: a@goo.ne.jp\r\n\r\n", &headers).unwrap());
    }
    (thread_cpu_seconds() - started) / n as f64
}

/// CPU time of the calling thread in nanosecond resolution (schedstat), where
/// /proc/PID/stat counts in clock ticks (10 ms) and would round a short run.
fn thread_cpu_seconds() -> f64 {
    let stat = std::fs::read_to_string("/proc/thread-self/schedstat").unwrap_or_default();
    let nanos: f64 = stat
        .split_whitespace()
        .next()
        .and_then(|v| v.parse().ok())
        .unwrap_or(0.0);
    nanos / 1e9
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn start_relay(ses: SocketAddr, port: u16, admin: u16) -> std::process::Child {
    let dir = std::env::temp_dir().join(format!("ses-relay-load-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let config = dir.join("relay.toml");
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
"#,
            key = concat!(env!("CARGO_MANIFEST_DIR"), "/etc/dev/dkim-demo.pem"),
        ),
    )
    .unwrap();
    // SES_RELAY_LOAD_BIN runs another build (an A/B comparison of two commits).
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

#[tokio::main]
async fn main() {
    let args = parse_args();
    let signature = rsa_signature_seconds();
    let (ses, served) = fake_ses(args.ses_latency).await;
    let mut child = None;
    let target = match args.target {
        Some(target) => target,
        None => {
            let port = free_port();
            child = Some(start_relay(ses, port, free_port()));
            SocketAddr::from(([127, 0, 0, 1], port))
        }
    };
    let pid = child.as_ref().map(|c| c.id());
    // Warm-up: connections, SDK client, TLS-free HTTP pool.
    let _ = client(target, (0..20).collect(), args.size, None, Instant::now()).await;
    let cpu_before = pid.map(cpu_seconds).unwrap_or(0.0);

    let start = Instant::now();
    let pace = args.rate.map(|r| Duration::from_secs_f64(1.0 / r));
    let mut tasks = Vec::new();
    for c in 0..args.connections {
        let ids: Vec<usize> = (c..args.messages).step_by(args.connections).collect();
        tasks.push(tokio::spawn(client(target, ids, args.size, pace, start)));
    }
    let mut latencies = Vec::with_capacity(args.messages);
    let mut failed = 0;
    for task in tasks {
        let (l, f) = task.await.unwrap();
        latencies.extend(l);
        failed += f;
    }
    let elapsed = start.elapsed();
    latencies.sort();
    let rate = args.messages as f64 / elapsed.as_secs_f64();
    println!(
        "load: {} messages of {} bytes over {} connections, SES latency {:?}{}",
        args.messages,
        args.size,
        args.connections,
        args.ses_latency,
        args.rate
            .map(|r| format!(", paced at {r}/s"))
            .unwrap_or_default()
    );
    println!(
        "throughput: {rate:.0} messages/s ({failed} failed, {} SES requests)",
        served.load(Ordering::Relaxed)
    );
    println!(
        "latency: p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms",
        percentile(&latencies, 0.5).as_secs_f64() * 1e3,
        percentile(&latencies, 0.99).as_secs_f64() * 1e3,
        latencies.last().copied().unwrap_or_default().as_secs_f64() * 1e3
    );
    if let Some(pid) = pid {
        let per_message = (cpu_seconds(pid) - cpu_before) / args.messages as f64;
        println!(
            "relay CPU: {:.3} ms per message = {:.2} x one RSA-2048 signature ({:.3} ms, same run)",
            per_message * 1e3,
            per_message / signature,
            signature * 1e3
        );
        println!("relay peak RSS: {:.1} MiB", peak_rss_mib(pid));
    } else {
        println!("RSA-2048 signature here: {:.3} ms", signature * 1e3);
    }
    if let Some(mut child) = child {
        let _ = std::process::Command::new("kill")
            .args(["-TERM", &child.id().to_string()])
            .status();
        let _ = child.wait();
    }
}

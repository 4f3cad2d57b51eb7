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

mod harness;

use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use harness::{Session, cpu_seconds, fake_ses, free_port, message, peak_rss_mib, start_relay};

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

/// One connection sending its share of messages; returns latencies and failures.
async fn client(
    addr: SocketAddr,
    ids: Vec<usize>,
    size: usize,
    pace: Option<Duration>,
    start: Instant,
) -> (Vec<Duration>, usize) {
    let mut session = Session::open(addr).await;
    let mut latencies = Vec::with_capacity(ids.len());
    let mut failed = 0;
    for i in ids {
        if let Some(pace) = pace {
            let due = start + pace * i as u32;
            tokio::time::sleep_until(due.into()).await;
        }
        let (latency, accepted) = session.send(i, &message(size, i)).await;
        latencies.push(latency);
        if !accepted {
            failed += 1;
        }
    }
    session.quit().await;
    (latencies, failed)
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
    let keys = ses_relay::message::prepare::dkim::DkimKeys::load(&config).unwrap();
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
            child = Some(start_relay(ses, port, free_port(), ""));
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
    if let Some(child) = child {
        harness::stop_relay(child);
    }
}

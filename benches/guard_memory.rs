//! The rollback guard's memory in the running relay: the relay's resident set
//! after a stretch at full load with `[guard] enabled = true`, against the
//! same load with the guard off, measured one after the other in one run and
//! given as a ratio.
//!
//! ```text
//! cargo bench --bench guard_memory -- [--duration 5m] [--connections 20] [--size 4096]
//! SES_RELAY_GUARD_BENCH_DURATION=60s cargo bench --bench guard_memory
//! ```
//!
//! Each run starts the `ses-relay` binary (as `benches/load.rs` does, with
//! the in-process SES stand-in answering at once), sends unpaced over C
//! connections for the duration, every message carrying a `Received:` header
//! dated now, as a Postfix server's would, so the guard records a delay for
//! each one as well as its outcome. Then it reads the relay's VmRSS (final)
//! and VmHWM (peak) from /proc/PID/status. The default duration, 5 minutes,
//! is the guard's default window: the window is full at the end. A shorter
//! run (the environment variable, or `--duration`) measures a window filled
//! that far. It runs under `cargo bench` only (`cargo test --benches` gets a
//! one-line notice instead of 10 minutes of load).

mod harness;

use std::net::SocketAddr;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use harness::{Session, fake_ses, free_port, message, peak_rss_mib, rss_mib, start_relay};

struct Args {
    duration: Duration,
    connections: usize,
    size: usize,
}

fn parse_args() -> Option<Args> {
    let duration = std::env::var("SES_RELAY_GUARD_BENCH_DURATION")
        .map(|d| humantime::parse_duration(&d).expect("SES_RELAY_GUARD_BENCH_DURATION=60s"))
        .unwrap_or(Duration::from_secs(300));
    let mut args = Args {
        duration,
        connections: 20,
        size: 4096,
    };
    let mut bench = false;
    let mut it = std::env::args().skip(1);
    while let Some(arg) = it.next() {
        let mut value = || it.next().unwrap_or_else(|| panic!("{arg} needs a value"));
        match arg.as_str() {
            "--duration" => {
                args.duration = humantime::parse_duration(&value()).expect("--duration 5m")
            }
            "--connections" => args.connections = value().parse().expect("--connections C"),
            "--size" => args.size = value().parse().expect("--size BYTES"),
            "--bench" => bench = true, // cargo bench passes this; cargo test does not
            other => panic!("unknown argument {other}"),
        }
    }
    bench.then_some(args)
}

/// What one run measured.
struct Run {
    messages: u64,
    failed: u64,
    seconds: f64,
    /// VmRSS after the warm-up, in MiB.
    rss_start: f64,
    /// VmRSS at the end of the load, in MiB.
    rss_final: f64,
    /// VmHWM at the end of the load, in MiB.
    rss_peak: f64,
}

/// Message `i` with a `Received:` header dated now on top, as the Postfix
/// server that hands it over writes one.
fn received_message(size: usize, i: usize) -> String {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64);
    let date = mail_parser::DateTime::from_timestamp(now).to_rfc822();
    format!(
        "Received: from client.load (client.load [127.0.0.1])\r\n\tby mx.load (Postfix) with ESMTP id L{i}; {date}\r\n{}",
        message(size, i)
    )
}

/// One connection sending until `deadline`: messages sent and refused.
async fn client(
    addr: SocketAddr,
    first: usize,
    step: usize,
    size: usize,
    deadline: Instant,
) -> (u64, u64) {
    let mut session = Session::open(addr).await;
    let (mut sent, mut failed) = (0, 0);
    let mut i = first;
    while Instant::now() < deadline {
        let (_, accepted) = session.send(i, &received_message(size, i)).await;
        sent += 1;
        if !accepted {
            failed += 1;
        }
        i += step;
    }
    session.quit().await;
    (sent, failed)
}

async fn run(guard: bool, args: &Args) -> Run {
    let (ses, _) = fake_ses(Duration::ZERO).await;
    let port = free_port();
    // A legacy route (a dry run that nothing is routed to), so the guard is
    // armed as in production: a trip could move traffic.
    let outbox =
        std::env::temp_dir().join(format!("ses-relay-guard-memory-{}", std::process::id()));
    let extra = format!(
        "[guard]\nenabled = {guard}\n[legacy]\nmode = \"outbox\"\noutbox-dir = \"{}\"\n\
         [cutover]\nses-percent = 100.0\nstate-file = \"\"\n",
        outbox.display()
    );
    let child = start_relay(ses, port, free_port(), &extra);
    let pid = child.id();
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    let label = if guard { "guard on" } else { "guard off" };
    // Warm-up: the pools and the first allocations, outside the measurement.
    let mut warm = Session::open(addr).await;
    for i in 0..20 {
        warm.send(i, &received_message(args.size, i)).await;
    }
    warm.quit().await;
    let rss_start = rss_mib(pid);

    let start = Instant::now();
    let deadline = start + args.duration;
    let mut tasks = Vec::new();
    for c in 0..args.connections {
        let (step, size) = (args.connections, args.size);
        tasks.push(tokio::spawn(client(addr, c, step, size, deadline)));
    }
    // The resident set once a minute, to show its course.
    let mut minute = start + Duration::from_secs(60);
    while minute < deadline {
        tokio::time::sleep_until(minute.into()).await;
        let elapsed = minute.duration_since(start).as_secs() / 60;
        eprintln!("{label}: after {elapsed} min, RSS {:.1} MiB", rss_mib(pid));
        minute += Duration::from_secs(60);
    }
    let (mut messages, mut failed) = (0, 0);
    for task in tasks {
        let (sent, refused) = task.await.unwrap();
        messages += sent;
        failed += refused;
    }
    let seconds = start.elapsed().as_secs_f64();
    let measured = Run {
        messages,
        failed,
        seconds,
        rss_start,
        rss_final: rss_mib(pid),
        rss_peak: peak_rss_mib(pid),
    };
    harness::stop_relay(child);
    let _ = std::fs::remove_dir_all(&outbox);
    println!(
        "{label}: {} messages in {:.0} s ({:.0}/s, {} failed); RSS after warm-up {:.1} MiB, final {:.1} MiB, peak {:.1} MiB",
        measured.messages,
        measured.seconds,
        measured.messages as f64 / measured.seconds,
        measured.failed,
        measured.rss_start,
        measured.rss_final,
        measured.rss_peak
    );
    measured
}

#[tokio::main]
async fn main() {
    let Some(args) = parse_args() else {
        println!(
            "guard_memory: a benchmark; it runs under `cargo bench --bench guard_memory` only"
        );
        return;
    };
    println!(
        "guard_memory: {} s at full load per run, {} connections, {} bytes a message; guard off, then on",
        args.duration.as_secs(),
        args.connections,
        args.size
    );
    let off = run(false, &args).await;
    let on = run(true, &args).await;
    println!(
        "ratio guard on / off: final RSS {:.2}, peak RSS {:.2} (throughput {:.2})",
        on.rss_final / off.rss_final,
        on.rss_peak / off.rss_peak,
        (on.messages as f64 / on.seconds) / (off.messages as f64 / off.seconds)
    );
}

//! The rollback guard's cost per message: one SES-route outcome through the
//! shared guard (lock, clock, window, verdict), the judge alone over a full
//! 5-minute window at 4,000 messages a second, and reading the client's
//! `Received:` date. Then, once, the memory a full window takes: 1.2 million
//! observations (5 minutes at 4,000/s), as resident set growth.

use std::hint::black_box;
use std::time::{Duration, Instant};

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use ses_relay::config::{GuardConfig, HumanDuration};
use ses_relay::control::guard::{Guard, Judge, SesAnswer, Thresholds};

/// Thresholds no steady load trips: every outcome accepted, delays small.
fn thresholds() -> Thresholds {
    let config = GuardConfig {
        enabled: true,
        window: HumanDuration(Duration::from_secs(300)),
        ..GuardConfig::default()
    };
    Thresholds::from(&config)
}

/// Feeds `judge` `rate` outcomes a second for `seconds`, from `start`.
fn fill(judge: &mut Judge, start: Instant, rate: u64, seconds: u64) {
    for i in 0..rate * seconds {
        let now = start + Duration::from_micros(i * 1_000_000 / rate);
        judge.outcome(now, true, Some(Duration::from_secs(i % 30)));
        if i % rate == 0 {
            black_box(judge.judge(now));
        }
    }
}

/// Resident set size of this process, in KiB (Linux).
fn rss_kib() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

fn bench(c: &mut Criterion) {
    let mut group = c.benchmark_group("guard");
    group.throughput(Throughput::Elements(1));

    let cutover =
        ses_relay::control::cutover::Cutover::load(std::path::Path::new(""), 100.0).unwrap();
    let guard = Guard::new(
        &GuardConfig {
            enabled: true,
            ..GuardConfig::default()
        },
        cutover,
        true,
    );
    let client = std::net::IpAddr::from([192, 0, 2, 1]);
    group.bench_function("outcome_through_the_shared_guard", |b| {
        b.iter(|| {
            black_box(guard.ses_answer(SesAnswer::Accepted(Some(Duration::from_secs(3))), client))
        })
    });

    // A window already full: 5 minutes at 4,000/s, expiry running as time goes on.
    let start = Instant::now();
    let mut judge = Judge::new(thresholds());
    fill(&mut judge, start, 4_000, 300);
    let mut i = 300 * 4_000u64;
    group.bench_function("outcome_and_verdict_full_window_4000_per_s", |b| {
        b.iter(|| {
            i += 1;
            let now = start + Duration::from_micros(i * 250);
            judge.outcome(now, true, Some(Duration::from_secs(i % 30)));
            black_box(judge.judge(now))
        })
    });

    let message = b"Received: from client.goo.ne.jp (client.goo.ne.jp [10.0.0.1])\r\n\tby mx1.goo.ne.jp (Postfix) with ESMTP id 4Abc;\r\n\tTue, 1 Dec 2026 17:00:00 +0900\r\n\
        Received: from sender.example by client.goo.ne.jp; Tue, 1 Dec 2026 16:59:58 +0900\r\n\
        From: <news@goo.ne.jp>\r\nTo: <user@example.com>\r\nSubject: bench\r\nMessage-ID: <1@goo.ne.jp>\r\n\r\nbody\r\n";
    group.bench_function("client_received_date", |b| {
        b.iter(|| {
            black_box(ses_relay::message::received::first_taken(black_box(
                message,
            )))
        })
    });
    group.finish();

    // Memory of a full window, once: resident set before and after.
    if let Some(before) = rss_kib() {
        let mut judge = Judge::new(thresholds());
        fill(&mut judge, Instant::now(), 4_000, 300);
        let after = rss_kib().unwrap_or(before);
        println!(
            "guard window after 5 minutes at 4,000 messages/s: resident set {before} KiB before, {after} KiB after (+{} KiB)",
            after.saturating_sub(before)
        );
        black_box(judge.figures(Instant::now()));
    }
}

criterion_group!(benches, bench);
criterion_main!(benches);

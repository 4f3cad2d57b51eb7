//! Log floods an outsider can cause, counted in lines: 500 connections from
//! a peer not in `proxy-trusted`, 100 broken PROXY headers from a trusted
//! one, and a legacy outage failing 100 transactions each give a handful of
//! WARN lines and one `suppressed N more` line that accounts for the rest;
//! so do 100 failed TLS handshakes.
//! The relay runs as its own process with its log in a file.

mod common;

use std::net::SocketAddr;
use std::time::Duration;

use common::TempDir;
use common::client::{SmtpClient, connect_from};
use common::relay_process::{RelayProcess, config_file};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const BALANCER: &str = "127.0.0.2";

/// Sends `bytes` from `source`, then reads until the relay closes.
async fn knock(source: &'static str, relay: SocketAddr, bytes: &'static [u8]) {
    let mut stream = connect_from(source, relay).await;
    let _ = stream.write_all(bytes).await;
    let mut sink = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(10), stream.read_to_end(&mut sink)).await;
}

/// `n` knocks, 50 at a time.
async fn knock_many(n: usize, source: &'static str, relay: SocketAddr, bytes: &'static [u8]) {
    for _ in 0..n / 50 {
        let batch: Vec<_> = (0..50)
            .map(|_| tokio::spawn(knock(source, relay, bytes)))
            .collect();
        for knock in batch {
            knock.await.unwrap();
        }
    }
}

/// The lines of `log` that say `what`, and the counts of the summary lines for it.
fn lines_and_summaries(log: &str, what: &str) -> (usize, Vec<u64>) {
    let lines = log
        .lines()
        .filter(|l| l.contains(" WARN ") && l.contains(what) && !l.contains("suppressed"))
        .count();
    let summaries = log
        .lines()
        .filter(|l| l.contains(" WARN suppressed ") && l.contains(what))
        .map(|l| {
            let count = l.split("WARN suppressed ").nth(1).unwrap();
            count.split(' ').next().unwrap().parse().unwrap()
        })
        .collect();
    (lines, summaries)
}

/// Waits until the lines and summaries for `what` account for all `events`.
fn accounted(relay: &RelayProcess, what: &str, events: u64) -> (usize, Vec<u64>) {
    let log = relay.wait_for_log(&format!("{events} `{what}` accounted for"), |log| {
        let (lines, summaries) = lines_and_summaries(log, what);
        lines as u64 + summaries.iter().sum::<u64>() >= events
    });
    let (lines, summaries) = lines_and_summaries(&log, what);
    assert_eq!(
        lines as u64 + summaries.iter().sum::<u64>(),
        events,
        "{log}"
    );
    (lines, summaries)
}

#[tokio::test]
async fn refusals_and_broken_proxy_headers_are_throttled_with_a_count() {
    let dir = TempDir::new("throttle-proxy");
    let config = config_file(
        &dir,
        &format!("proxy-protocol = true\nproxy-trusted = [\"{BALANCER}/32\"]"),
        "",
    );
    let relay = RelayProcess::start(&dir, &config);
    knock_many(500, "127.0.0.1", relay.smtp, b"EHLO scanner\r\n").await;
    let (lines, summaries) = accounted(&relay, "peer not in proxy-trusted, refused", 500);
    assert!(lines <= 10, "{lines} lines");
    assert_eq!(summaries.len(), 1, "{summaries:?}");

    knock_many(100, BALANCER, relay.smtp, b"PROXY \x1b]0;x\x07\r\n").await;
    let (lines, summaries) = accounted(&relay, "closed without a greeting", 100);
    assert!(lines <= 10, "{lines} lines");
    assert_eq!(summaries.len(), 1, "{summaries:?}");
}

#[tokio::test]
async fn failed_tls_handshakes_are_throttled_with_a_count() {
    let dir = TempDir::new("throttle-tls");
    let ca = common::TestCa::new();
    let tls = ca.tls_config();
    let config = config_file(
        &dir,
        &format!(
            "listen-tls = [\"127.0.0.1:0\"]\n[smtp.tls]\ncert = \"{}\"\nkey = \"{}\"",
            tls.cert.display(),
            tls.key.display()
        ),
        "",
    );
    let relay = RelayProcess::start(&dir, &config);
    let implicit_tls = relay.tls.expect("implicit TLS listener in the log");
    // Plaintext SMTP where a ClientHello belongs.
    knock_many(100, "127.0.0.1", implicit_tls, b"EHLO scanner\r\n").await;
    let (lines, summaries) = accounted(&relay, "TLS handshake failed", 100);
    assert!(lines <= 10, "{lines} lines");
    assert_eq!(summaries.len(), 1, "{summaries:?}");
}

#[tokio::test]
async fn a_legacy_outage_logs_one_line_per_cause_with_a_count() {
    // A port nothing listens on: every transaction finds the legacy relay unreachable.
    let refusing = common::RefusingPort::bind();
    let legacy = refusing.addr;
    let dir = TempDir::new("throttle-legacy");
    let config = config_file(&dir, "", "");
    let text = std::fs::read_to_string(&config)
        .unwrap()
        .replace(
            "[legacy]\nmode = \"outbox\"",
            &format!("[legacy]\nmode = \"smtp\"\nrelay = \"{legacy}\"\ntls = \"none\""),
        )
        .replace("ses-percent = 100.0", "ses-percent = 0.0");
    std::fs::write(&config, text).unwrap();
    let relay = RelayProcess::start(&dir, &config);

    let mut client = SmtpClient::greeted(relay.smtp).await;
    let transactions = 100;
    for command in std::iter::once("EHLO postfix.test").chain(
        ["MAIL FROM:<a@goo.ne.jp>", "RCPT TO:<b@example.com>", "RSET"]
            .into_iter()
            .cycle()
            .take(3 * transactions),
    ) {
        let answer = client.command(command).await;
        if command.starts_with("RCPT") {
            assert!(answer.starts_with("451 4.4.1"), "{answer}");
        }
    }
    let (lines, summaries) = accounted(&relay, "legacy relay", transactions as u64);
    // Within one 10 s interval: one line of the cause, the rest counted.
    assert_eq!(lines, 1, "{summaries:?}");
    assert!(summaries.len() <= 2, "{summaries:?}");
}

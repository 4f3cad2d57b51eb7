//! The staged cutover end to end in one process: the relay with the SES v2
//! fake and an in-process SMTP sink as the legacy relay; the split, the
//! legacy proxy's pass-through, and the admin API.

mod common;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use common::ses_fake::SesFake;
use common::smtp_sink::SmtpSink;
use common::{RunningRelay, TempDir, test_config};
use ses_relay::admin::client::{Answer, request};
use ses_relay::config::{Config, HumanDuration, LegacyConfig, LegacyTls};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const TOKEN: &str = "s3cret-token";

fn cutover_config(ses: &SesFake, legacy: SocketAddr, dir: &TempDir, percent: f64) -> Config {
    let mut config = test_config(&ses.endpoint());
    config.legacy = Some(LegacyConfig {
        relay: legacy.to_string(),
        tls: LegacyTls::None,
        idle_timeout: HumanDuration(Duration::from_secs(30)),
        connect_timeout: HumanDuration(Duration::from_secs(2)),
        ..LegacyConfig::default()
    });
    config.cutover.ses_percent = Some(percent);
    config.cutover.state_file = dir.path("state/cutover.json");
    std::fs::write(dir.path("token"), format!("{TOKEN}\n")).unwrap();
    config.admin.token_file = dir.path("token");
    config.smtp.max_connections = 100;
    config
}

/// Reads whole SMTP replies from a stream.
struct Replies {
    stream: TcpStream,
    buf: Vec<u8>,
}

impl Replies {
    async fn connect(addr: SocketAddr) -> Replies {
        let stream = TcpStream::connect(addr).await.unwrap();
        let mut r = Replies {
            stream,
            buf: Vec::new(),
        };
        assert!(r.next().await.starts_with("220"));
        r.send("EHLO client.test\r\n").await;
        assert!(r.next().await.starts_with("250"));
        r
    }

    async fn send(&mut self, text: &str) {
        self.stream.write_all(text.as_bytes()).await.unwrap();
    }

    async fn next(&mut self) -> String {
        loop {
            let mut start = 0;
            while let Some(lf) = self.buf[start..].iter().position(|&b| b == b'\n') {
                let line_end = start + lf + 1;
                if self.buf.get(start + 3) != Some(&b'-') {
                    let reply: Vec<u8> = self.buf.drain(..line_end).collect();
                    return String::from_utf8_lossy(&reply).into_owned();
                }
                start = line_end;
            }
            let mut chunk = [0u8; 8192];
            let n = tokio::time::timeout(Duration::from_secs(30), self.stream.read(&mut chunk))
                .await
                .expect("reply in time")
                .unwrap();
            assert!(n > 0, "connection closed");
            self.buf.extend_from_slice(&chunk[..n]);
        }
    }

    /// One whole transaction, pipelined as Postfix does; returns the final reply.
    async fn transaction(&mut self, from: &str, to: &str, message_id: &str) -> String {
        self.send(&format!("MAIL FROM:<{from}>\r\nRCPT TO:<{to}>\r\nDATA\r\n"))
            .await;
        for expected in ["250", "250", "354"] {
            let reply = self.next().await;
            assert!(reply.starts_with(expected), "{from} -> {to}: {reply}");
        }
        self.send(&format!(
            "From: <{from}>\r\nTo: <{to}>\r\nSubject: split\r\nMessage-ID: <{message_id}>\r\n\r\nbody\r\n.\r\n"
        ))
        .await;
        self.next().await
    }
}

/// Sends `count` distinct transactions over `connections` connections; returns how many got 250.
async fn send_many(addr: SocketAddr, tag: &str, count: usize, connections: usize) -> usize {
    let mut tasks = Vec::new();
    for c in 0..connections {
        let tag = tag.to_string();
        tasks.push(tokio::spawn(async move {
            let mut smtp = Replies::connect(addr).await;
            let mut ok = 0;
            for i in (c..count).step_by(connections) {
                let reply = smtp
                    .transaction(
                        &format!("sender{i}@example.org"),
                        "rcpt@example.net",
                        &format!("{tag}-{i}@test"),
                    )
                    .await;
                ok += usize::from(reply.starts_with("250"));
            }
            ok
        }));
    }
    let mut ok = 0;
    for task in tasks {
        ok += task.await.unwrap();
    }
    ok
}

fn message_ids(raw: &[u8]) -> Option<String> {
    let text = String::from_utf8_lossy(raw);
    text.lines()
        .find_map(|l| l.strip_prefix("Message-ID: <"))
        .map(|id| id.trim_end_matches('>').to_string())
}

/// MAIL is accepted locally, the first RCPT gets `expected` (the legacy route could not open), then QUIT.
async fn rcpt_refused(relay: &RunningRelay, expected: &str) {
    let mut smtp = Replies::connect(relay.addr).await;
    smtp.send("MAIL FROM:<a@goo.ne.jp>\r\nRCPT TO:<b@example.net>\r\n")
        .await;
    assert!(smtp.next().await.starts_with("250"));
    let reply = smtp.next().await;
    assert!(reply.starts_with(expected), "expected {expected}: {reply}");
    smtp.send("QUIT\r\n").await;
    assert!(smtp.next().await.starts_with("221"));
}

async fn admin(
    addr: SocketAddr,
    method: &'static str,
    token: Option<&'static str>,
    body: Option<String>,
) -> Answer {
    tokio::task::spawn_blocking(move || {
        request(addr, method, "/cutover", token, body.as_deref()).unwrap()
    })
    .await
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_thousand_transactions_split_within_one_and_a_half_points() {
    let ses = SesFake::start().await;
    let sink = SmtpSink::start().await;
    let dir = TempDir::new("split");
    let relay = RunningRelay::start(cutover_config(&ses, sink.addr, &dir, 10.0)).await;
    let mut seen_ses = 0;
    let mut seen_legacy = 0;
    for percent in [10.0, 50.0, 90.0] {
        relay
            .relay
            .cutover
            .set(&relay.relay.router, percent, "test")
            .unwrap();
        let started = Instant::now();
        let tag = format!("p{percent}");
        let ok = send_many(relay.addr, &tag, 10_000, 16).await;
        assert_eq!(ok, 10_000, "every transaction delivered");
        let to_ses = ses.requests().len() - seen_ses;
        let to_legacy = sink.messages().len() - seen_legacy;
        seen_ses += to_ses;
        seen_legacy += to_legacy;
        assert_eq!(
            to_ses + to_legacy,
            10_000,
            "each message in exactly one route"
        );
        let share = to_ses as f64 / 100.0;
        println!("{percent}%: {share}% to SES in {:?}", started.elapsed());
        assert!(
            (share - percent).abs() <= 1.5,
            "{percent}%: {share}% went to SES"
        );
    }
    // Nothing was lost or duplicated: every Message-ID exactly once.
    let mut ids: Vec<String> = ses
        .requests()
        .iter()
        .filter_map(|r| message_ids(&r.raw))
        .chain(sink.messages().iter().filter_map(|m| message_ids(&m.data)))
        .collect();
    assert_eq!(ids.len(), 30_000);
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), 30_000);
    // The legacy connections were pooled and reused, not opened per transaction.
    assert!(
        sink.connections() <= 100,
        "{} legacy connections",
        sink.connections()
    );
    assert!(relay.stop().await);
}

#[tokio::test]
async fn the_same_transaction_takes_the_same_route_every_time() {
    let ses = SesFake::start().await;
    let sink = SmtpSink::start().await;
    let dir = TempDir::new("determinism");
    let relay = RunningRelay::start(cutover_config(&ses, sink.addr, &dir, 50.0)).await;
    let mut smtp = Replies::connect(relay.addr).await;
    for i in 0..40 {
        let from = format!("retry{i}@example.org");
        for attempt in 0..3 {
            let reply = smtp
                .transaction(&from, "rcpt@example.net", &format!("d{i}-{attempt}@test"))
                .await;
            assert!(reply.starts_with("250"), "{reply}");
        }
    }
    for i in 0..40 {
        let in_ses = ses
            .requests()
            .iter()
            .filter(|r| message_ids(&r.raw).is_some_and(|id| id.starts_with(&format!("d{i}-"))))
            .count();
        assert!(
            in_ses == 0 || in_ses == 3,
            "transaction {i} split across routes: {in_ses} of 3 to SES"
        );
    }
    assert!(relay.stop().await);
}

#[tokio::test]
async fn legacy_replies_pass_through_and_an_outage_is_451() {
    let ses = SesFake::start().await;
    let sink = SmtpSink::start().await;
    let dir = TempDir::new("passthrough");
    let relay = RunningRelay::start(cutover_config(&ses, sink.addr, &dir, 0.0)).await;
    let mut smtp = Replies::connect(relay.addr).await;
    smtp.send("MAIL FROM:<a@goo.ne.jp>\r\n").await;
    assert!(smtp.next().await.starts_with("250 2.1.0"));
    smtp.send("RCPT TO:<reject-me@example.net>\r\n").await;
    let refused = smtp.next().await;
    assert!(
        refused.starts_with("550 5.1.1 <reject-me@example.net>: Recipient address rejected"),
        "{refused}"
    );
    smtp.send("RCPT TO:<defer-me@example.net>\r\n").await;
    assert!(smtp.next().await.starts_with("450 4.2.0"));
    smtp.send("RCPT TO:<ok@example.net>\r\nDATA\r\n").await;
    assert!(smtp.next().await.starts_with("250 2.1.5"));
    assert!(smtp.next().await.starts_with("354"));
    smtp.send("From: a@goo.ne.jp\r\nSubject: legacy\r\n\r\n..dot line\r\n.\r\n")
        .await;
    let done = smtp.next().await;
    assert!(
        done.starts_with("250 2.0.0 Ok: queued as L00001"),
        "the legacy relay's own reply: {done}"
    );
    let got = &sink.messages()[0];
    assert_eq!(
        got.rcpt_to,
        ["ok@example.net"],
        "only what the legacy relay accepted"
    );
    let text = String::from_utf8_lossy(&got.data);
    assert!(text.contains("DKIM-Signature:"), "legacy.dkim-sign = true");
    assert!(!text.contains("X-SES-CONFIGURATION-SET"));
    assert!(
        text.ends_with("\r\n\r\n.dot line\r\n"),
        "dot transparency both ways: {text:?}"
    );
    assert!(ses.requests().is_empty());
    assert!(relay.stop().await);

    // The legacy relay is down: the RCPT is deferred, Postfix retries.
    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let dir = TempDir::new("outage");
    let relay = RunningRelay::start(cutover_config(&ses, closed, &dir, 0.0)).await;
    rcpt_refused(&relay, "451 4.4.1").await;
    assert!(relay.stop().await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn put_cutover_applies_at_once_persists_and_refuses_bad_requests() {
    let ses = SesFake::start().await;
    let sink = SmtpSink::start().await;
    let dir = TempDir::new("admin");
    let config = cutover_config(&ses, sink.addr, &dir, 0.0);
    let relay = RunningRelay::start(config.clone()).await;
    let admin_addr = relay.admin_addr.unwrap();

    let status = admin(admin_addr, "GET", None, None).await;
    assert_eq!(status.status, 200);
    let json: serde_json::Value = serde_json::from_str(&status.body).unwrap();
    assert_eq!(
        (json["ses_percent"].as_f64(), json["source"].as_str()),
        (Some(0.0), Some("config"))
    );

    // Refusals: no token, wrong token, out of range, not JSON.
    let change = |p: f64| Some(format!("{{\"ses_percent\": {p}, \"reason\": \"week 2\"}}"));
    assert_eq!(
        admin(admin_addr, "PUT", None, change(50.0)).await.status,
        401
    );
    assert_eq!(
        admin(admin_addr, "PUT", Some("wrong"), change(50.0))
            .await
            .status,
        401
    );
    let too_big = admin(admin_addr, "PUT", Some(TOKEN), change(101.0)).await;
    assert_eq!(too_big.status, 400);
    assert!(too_big.body.contains("0 to 100"), "{}", too_big.body);
    assert_eq!(
        admin(admin_addr, "PUT", Some(TOKEN), Some("fifty".into()))
            .await
            .status,
        400
    );
    assert_eq!(
        relay.relay.router.ses_percent(),
        0.0,
        "refusals change nothing"
    );
    assert_eq!(send_many(relay.addr, "before", 200, 4).await, 200);
    assert_eq!(ses.requests().len(), 0, "0 % sends nothing to SES");

    // 50 %: the next transactions split, without a restart.
    let set = admin(admin_addr, "PUT", Some(TOKEN), change(50.0)).await;
    assert_eq!(set.status, 200, "{}", set.body);
    assert_eq!(send_many(relay.addr, "after", 2_000, 8).await, 2_000);
    let share = ses.requests().len() as f64 / 20.0;
    assert!((share - 50.0).abs() <= 5.0, "{share}% to SES after PUT 50");
    assert!(relay.stop().await);

    // A restart keeps 50 from the state file although the config says 0.
    let restarted = RunningRelay::start(config).await;
    let status = admin(restarted.admin_addr.unwrap(), "GET", None, None).await;
    let json: serde_json::Value = serde_json::from_str(&status.body).unwrap();
    assert_eq!(json["ses_percent"].as_f64(), Some(50.0));
    assert_eq!(json["source"].as_str(), Some("state-file"));
    assert_eq!(json["reason"].as_str(), Some("week 2"));
    assert!(restarted.stop().await);
}

#[tokio::test]
async fn health_and_readiness() {
    let ses = SesFake::start().await;
    let sink = SmtpSink::start().await;
    let dir = TempDir::new("health");
    let relay = RunningRelay::start(cutover_config(&ses, sink.addr, &dir, 10.0)).await;
    let addr = relay.admin_addr.unwrap();
    let get = |path: &'static str| {
        tokio::task::spawn_blocking(move || request(addr, "GET", path, None, None).unwrap())
    };
    assert_eq!(get("/healthz").await.unwrap().status, 200);
    let ready = get("/readyz").await.unwrap();
    assert_eq!(ready.status, 200, "{}", ready.body);
    assert_eq!(get("/nope").await.unwrap().status, 404);
    assert!(relay.stop().await);

    // Legacy relay down: not ready.
    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let dir = TempDir::new("health-down");
    let relay = RunningRelay::start(cutover_config(&ses, closed, &dir, 10.0)).await;
    let addr = relay.admin_addr.unwrap();
    let ready =
        tokio::task::spawn_blocking(move || request(addr, "GET", "/readyz", None, None).unwrap())
            .await
            .unwrap();
    assert_eq!(ready.status, 503, "{}", ready.body);
    assert!(relay.stop().await);
}

async fn one_legacy_message(relay: &RunningRelay) -> String {
    let mut smtp = Replies::connect(relay.addr).await;
    smtp.transaction("a@goo.ne.jp", "b@example.net", "tls@test")
        .await
}

#[tokio::test]
async fn starttls_and_auth_toward_the_legacy_relay() {
    use common::TestCa;
    use common::smtp_sink::Features;
    let ses = SesFake::start().await;
    let ca = TestCa::new();
    let acceptor = ses_relay::tls::acceptor(&ca.tls_config()).unwrap();
    let sink = SmtpSink::start_with(Features {
        tls: Some(acceptor.clone()),
        auth: Some(("relay-user".into(), "pa55".into())),
    })
    .await;

    // Required TLS, verified against the CA file, then AUTH PLAIN with the password from a file.
    let dir = TempDir::new("legacy-tls");
    std::fs::write(dir.path("ca.pem"), &ca.ca_pem).unwrap();
    std::fs::write(dir.path("password"), "pa55\n").unwrap();
    let mut config = cutover_config(&ses, sink.addr, &dir, 0.0);
    let legacy = config.legacy.as_mut().unwrap();
    legacy.tls = LegacyTls::Required;
    legacy.ca_file = dir.path("ca.pem");
    legacy.auth_user = "relay-user".into();
    legacy.auth_password_file = dir.path("password");
    let relay = RunningRelay::start(config).await;
    let reply = one_legacy_message(&relay).await;
    assert!(reply.starts_with("250 2.0.0 Ok: queued as L"), "{reply}");
    let got = sink.messages().pop().unwrap();
    assert!(got.tls, "sent over TLS");
    assert_eq!(got.auth.as_deref(), Some("relay-user"));
    assert!(relay.stop().await);

    // The certificate really is checked: another CA's file makes the relay refuse to send.
    let dir = TempDir::new("legacy-tls-wrong-ca");
    std::fs::write(dir.path("ca.pem"), &TestCa::new().ca_pem).unwrap();
    let mut config = cutover_config(&ses, sink.addr, &dir, 0.0);
    let legacy = config.legacy.as_mut().unwrap();
    legacy.tls = LegacyTls::Required;
    legacy.ca_file = dir.path("ca.pem");
    let relay = RunningRelay::start(config).await;
    rcpt_refused(&relay, "451 4.4.1").await; // untrusted certificate
    assert!(relay.stop().await);

    // Opportunistic TLS takes the certificate as it is.
    let dir = TempDir::new("legacy-tls-may");
    std::fs::write(dir.path("password"), "pa55\n").unwrap();
    let mut config = cutover_config(&ses, sink.addr, &dir, 0.0);
    let legacy = config.legacy.as_mut().unwrap();
    legacy.tls = LegacyTls::Opportunistic;
    legacy.auth_user = "relay-user".into();
    legacy.auth_password_file = dir.path("password");
    let relay = RunningRelay::start(config).await;
    assert!(one_legacy_message(&relay).await.starts_with("250"));
    assert!(sink.messages().pop().unwrap().tls);
    assert!(relay.stop().await);

    // Required TLS toward a relay that does not offer it: deferred, never sent in plaintext.
    let plain = SmtpSink::start().await;
    let dir = TempDir::new("legacy-no-tls");
    let mut config = cutover_config(&ses, plain.addr, &dir, 0.0);
    config.legacy.as_mut().unwrap().tls = LegacyTls::Required;
    let relay = RunningRelay::start(config).await;
    rcpt_refused(&relay, "451 4.7.4").await;
    assert!(plain.messages().is_empty());
    assert!(relay.stop().await);
}

/// Without a `[legacy]` route there is nowhere for a share below 100 to go:
/// `PUT /cutover` below 100 is refused with 400 and changes nothing; 100 is
/// accepted.
#[tokio::test]
async fn put_cutover_below_100_without_a_legacy_route_is_refused() {
    let ses = SesFake::start().await;
    let dir = TempDir::new("no-legacy");
    let mut config = test_config(&ses.endpoint());
    config.cutover.state_file = dir.path("state/cutover.json");
    std::fs::write(dir.path("token"), format!("{TOKEN}\n")).unwrap();
    config.admin.token_file = dir.path("token");
    let relay = RunningRelay::start(config).await;
    let admin_addr = relay.admin_addr.unwrap();

    let status = admin(admin_addr, "GET", None, None).await;
    let json: serde_json::Value = serde_json::from_str(&status.body).unwrap();
    assert_eq!(json["ses_percent"].as_f64(), Some(100.0), "{}", status.body);
    assert_eq!(
        json["legacy_route"].as_bool(),
        Some(false),
        "{}",
        status.body
    );

    let change = |p: f64| {
        Some(format!(
            "{{\"ses_percent\": {p}, \"reason\": \"roll back\"}}"
        ))
    };
    for below in [0.0, 50.0, 99.99] {
        let refused = admin(admin_addr, "PUT", Some(TOKEN), change(below)).await;
        assert_eq!(refused.status, 400, "{below}: {}", refused.body);
        let json: serde_json::Value = serde_json::from_str(&refused.body).unwrap();
        assert_eq!(
            json["error"].as_str(),
            Some("no [legacy] route is configured: only 100 is possible"),
            "{}",
            refused.body
        );
    }
    assert_eq!(
        relay.relay.router.ses_percent(),
        100.0,
        "refusals change nothing"
    );
    assert!(
        !dir.path("state/cutover.json").exists(),
        "nothing persisted"
    );
    let status = admin(admin_addr, "GET", None, None).await;
    let json: serde_json::Value = serde_json::from_str(&status.body).unwrap();
    assert_eq!(
        (json["ses_percent"].as_f64(), json["source"].as_str()),
        (Some(100.0), Some("config"))
    );

    let set = admin(admin_addr, "PUT", Some(TOKEN), change(100.0)).await;
    assert_eq!(set.status, 200, "{}", set.body);
    assert!(relay.stop().await);
}

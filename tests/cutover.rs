//! The staged cutover end to end in one process: the relay with the SES v2
//! fake and an in-process SMTP sink as the legacy relay; the split and the
//! admin API (the legacy proxy itself is tests/legacy.rs).

mod common;

use ses_relay::control::cutover::{Change, Source};
use ses_relay::message::route::Percent;

use std::net::SocketAddr;
use std::time::Instant;

use common::admin::get;
use common::client::SmtpClient;
use common::cutover::{TOKEN, cutover_config, transaction};
use common::metrics::Metrics;
use common::ses_fake::SesFake;
use common::smtp_sink::SmtpSink;
use common::wait::{ok_if, wait_until_async};
use common::{RunningRelay, TempDir, test_config};
use ses_relay::control::admin::client::Answer;

/// Sends `count` distinct transactions over `connections` connections; returns how many got 250.
async fn send_many(addr: SocketAddr, tag: &str, count: usize, connections: usize) -> usize {
    let mut tasks = Vec::new();
    for c in 0..connections {
        let tag = tag.to_string();
        tasks.push(tokio::spawn(async move {
            let mut smtp = SmtpClient::ready(addr).await;
            let mut ok = 0;
            for i in (c..count).step_by(connections) {
                let reply = transaction(
                    &mut smtp,
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

/// `method /cutover` on the admin API at `addr`.
async fn admin(
    addr: SocketAddr,
    method: &str,
    token: Option<&str>,
    body: Option<String>,
) -> Answer {
    common::admin::request(addr, method, "/cutover", token, body).await
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
            .control
            .cutover
            .change(Change {
                percent: Percent::new(percent).unwrap(),
                reason: "test".into(),
                by: Source::Api,
            })
            .await
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
    let mut smtp = SmtpClient::ready(relay.addr).await;
    for i in 0..40 {
        let from = format!("retry{i}@example.org");
        for attempt in 0..3 {
            let reply = transaction(
                &mut smtp,
                &from,
                "rcpt@example.net",
                &format!("d{i}-{attempt}@test"),
            )
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
        relay.control.router.ses_percent(),
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
    assert_eq!(get(relay.admin(), "/healthz").await.status, 200);
    let ready = get(relay.admin(), "/readyz").await;
    assert_eq!(ready.status, 200, "{}", ready.body);
    assert_eq!(get(relay.admin(), "/nope").await.status, 404);
    assert!(relay.stop().await);

    // Legacy relay down: still ready (every relay shares it: a load balancer
    // must not take the fleet out for one route), and the gauge says down.
    let refusing = common::RefusingPort::bind();
    let closed = refusing.addr;
    let dir = TempDir::new("health-down");
    let relay = RunningRelay::start(cutover_config(&ses, closed, &dir, 10.0)).await;
    wait_until_async(std::time::Duration::from_secs(10), || async {
        let metrics = Metrics::of(&relay).await;
        let up = metrics.value("ses_relay_upstream_up", &[("route", "legacy")]);
        ok_if(
            up == Some(0.0),
            format!("no legacy down gauge:\n{}", metrics.text()),
        )
    })
    .await;
    let ready = get(relay.admin(), "/readyz").await;
    assert_eq!(ready.status, 200, "{}", ready.body);
    assert!(
        ready.body.contains("\"legacy\": \"down\""),
        "{}",
        ready.body
    );
    let status = get(relay.admin(), "/cutover").await;
    assert!(
        status.body.contains("\"legacy\": \"down\""),
        "{}",
        status.body
    );
    // (A drain is what makes it unready: tests/fleet.rs, a transaction in flight.)
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
        relay.control.router.ses_percent(),
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

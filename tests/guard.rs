//! The rollback guard end to end: the relay in-process with moto as SES v2
//! and an in-process SMTP sink as the legacy relay; SES events from SQS are
//! tests/guard_feedback.rs, forged evidence and SES's per-message refusals
//! tests/guard_evidence.rs. Failures of SES itself (a configuration set that
//! does not exist, an account stop), which moto cannot be made to answer, are
//! played by the in-process SES fake.
//!
//! The moto tests skip with the reason printed when moto is missing, unless
//! `SES_RELAY_REQUIRE_PEERS=1` (as `.ci/run` sets), where they fail.

mod common;

use std::net::SocketAddr;

use common::admin::{cutover, get, set_cutover};
use common::client::deliver;
use common::guard::{TOKEN, guard_config, rfc822};
use common::metrics::Metrics;
use common::peers::{Moto, moto_identity, moto_missing, run_or_skip};
use common::ses_fake::{Mode, SesFake};
use common::smtp_sink::SmtpSink;
use common::wait::{ok_if, wait_until_async};
use common::{RunningRelay, TempDir, test_config};

/// One transaction; returns the final reply.
async fn send(addr: SocketAddr, from: &str, received_ago: Option<i64>, body: &str) -> String {
    let received = received_ago.map_or(String::new(), |ago| {
        format!(
            "Received: from client.test (client.test [10.0.0.1])\r\n\tby mx1.goo.ne.jp (Postfix) with ESMTP id 4Abc;\r\n\t{}\r\n",
            rfc822(ago)
        )
    });
    let message = format!(
        "{received}From: <{from}>\r\nTo: <rcpt@example.net>\r\nSubject: guard\r\n\r\n{body}"
    );
    deliver(addr, from, &["rcpt@example.net"], &message).await
}

/// Creates the sending identity in moto (the configuration set too), so SES accepts.
async fn verify_identity(endpoint: &str, domain: &str) {
    let config = test_config(endpoint);
    moto_identity(endpoint, domain, &config.ses.configuration_set).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(
    not(has_moto),
    ignore = "needs moto (SES emulator): run tests/peers/install.sh"
)]
async fn ses_failing_everything_trips_the_failure_ratio_bare_lf_trips_nothing_restart_keeps_it_put_rearms()
 {
    let ses = SesFake::start().await;
    // The configuration set is gone: SES refuses every message, whoever sends it.
    ses.set_mode(Mode::Reject(
        "NotFoundException",
        "Configuration set <ses-relay> does not exist.",
    ));
    let sink = SmtpSink::start().await;
    let dir = TempDir::new("guard-failure");
    let config = guard_config(&ses.endpoint(), &sink, &dir, 5);
    let relay = RunningRelay::start(config.clone()).await;
    let before = Metrics::of(&relay).await;

    // A client sending bare LF gets 550 every time; the guard never hears of it.
    for i in 0..8 {
        let reply = send(
            relay.addr,
            "broken@client.example",
            None,
            &format!("line {i}\nbare\n"),
        )
        .await;
        assert!(reply.starts_with("550 5.5.2"), "{reply}");
    }
    let status = cutover(&relay).await;
    assert_eq!(status["ses_percent"], 100.0, "{status}");
    assert_eq!(status["guard"]["state"], "armed", "{status}");
    assert_eq!(status["guard"]["outcomes"], 0, "{status}");

    // SES refuses: four are below min-transactions, the fifth trips.
    for i in 0..5 {
        let reply = send(relay.addr, "news@unverified.example", None, "hello\r\n").await;
        assert!(reply.starts_with("554 5.3.0"), "refusal {i}: {reply}");
        if i < 4 {
            assert_eq!(cutover(&relay).await["ses_percent"], 100.0);
        }
    }
    let status = cutover(&relay).await;
    assert_eq!(status["ses_percent"], 0.0, "{status}");
    assert_eq!(status["source"], "guard", "{status}");
    assert_eq!(
        status["reason"], "guard: failure ratio 1.00 > 0.05 over 1m (5 of 5)",
        "{status}"
    );
    assert_eq!(status["guard"]["state"], "tripped", "{status}");
    let trips = "ses_relay_guard_trips_total";
    let after = Metrics::of(&relay).await;
    assert!(
        after.delta(&before, trips, &[("condition", "failure-ratio")]) >= 1.0,
        "{}",
        after.text()
    );
    // The next transaction goes to legacy.
    let reply = send(relay.addr, "news@unverified.example", None, "after\r\n").await;
    assert!(reply.starts_with("250"), "{reply}");
    assert_eq!(sink.messages().len(), 1);
    // Persisted as the guard's (written off the async workers, right after).
    wait_until_async(std::time::Duration::from_secs(5), || async {
        let saved = std::fs::read_to_string(dir.path("state/cutover.json")).unwrap_or_default();
        ok_if(
            saved.contains("\"source\": \"guard\""),
            format!("not persisted: {saved}"),
        )
    })
    .await;
    assert!(relay.stop().await);

    // A restart keeps the guard's percentage, and the guard stays tripped.
    let relay = RunningRelay::start(config.clone()).await;
    let status = cutover(&relay).await;
    assert_eq!(status["ses_percent"], 0.0, "{status}");
    assert_eq!(status["source"], "guard", "{status}");
    assert_eq!(status["guard"]["state"], "tripped", "{status}");
    let reply = send(relay.addr, "news@unverified.example", None, "restart\r\n").await;
    assert!(reply.starts_with("250"), "{reply}");
    assert_eq!(sink.messages().len(), 2);

    // PUT /cutover re-arms on a fresh window: four refusals do not trip again, a fifth does.
    let answer = set_cutover(&relay, TOKEN, 100.0, "fixed the identity").await;
    assert_eq!(answer.status, 200, "{}", answer.body);
    let status: serde_json::Value = serde_json::from_str(&answer.body).unwrap();
    assert_eq!(status["guard"]["state"], "armed", "{status}");
    assert_eq!(status["guard"]["outcomes"], 0, "{status}");
    assert_ne!(status["source"], "guard", "{status}");
    for _ in 0..4 {
        let reply = send(relay.addr, "news@unverified.example", None, "again\r\n").await;
        assert!(reply.starts_with("554"), "{reply}");
    }
    assert_eq!(cutover(&relay).await["ses_percent"], 100.0);
    let reply = send(relay.addr, "news@unverified.example", None, "again\r\n").await;
    assert!(reply.starts_with("554"), "{reply}");
    let status = cutover(&relay).await;
    assert_eq!(
        (status["ses_percent"].clone(), status["source"].clone()),
        (0.0.into(), "guard".into()),
        "{status}"
    );
    assert!(relay.stop().await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(
    not(has_moto),
    ignore = "needs moto (SES emulator): run tests/peers/install.sh"
)]
async fn ten_minute_old_received_dates_trip_the_delay() {
    if !run_or_skip(
        "ten_minute_old_received_dates_trip_the_delay",
        moto_missing(),
    ) {
        return;
    }
    let moto = tokio::task::spawn_blocking(Moto::start).await.unwrap();
    verify_identity(&moto.endpoint(), "goo.ne.jp").await;
    let sink = SmtpSink::start().await;
    let dir = TempDir::new("guard-delay");
    let relay = RunningRelay::start(guard_config(&moto.endpoint(), &sink, &dir, 5)).await;
    // Fresh mail and mail without a Received date: accepted, no delay to speak of.
    for ago in [Some(1), None, Some(2), None, Some(3)] {
        let reply = send(relay.addr, "news@goo.ne.jp", ago, "fresh\r\n").await;
        assert!(reply.starts_with("250"), "{reply}");
    }
    let status = cutover(&relay).await;
    assert_eq!(status["ses_percent"], 100.0, "{status}");
    assert_eq!(status["guard"]["outcomes"], 5, "{status}");
    // Two undated messages were left out of the delay.
    let mut slow_sent = 0;
    // Ten minutes in the fleet's queue, all accepted by SES: the p95 passes 5m.
    while cutover(&relay).await["ses_percent"] == 100.0 {
        assert!(slow_sent < 5, "no trip after {slow_sent} slow messages");
        let reply = send(relay.addr, "news@goo.ne.jp", Some(600), "slow\r\n").await;
        assert!(reply.starts_with("250"), "{reply}");
        slow_sent += 1;
    }
    // 3 fresh + k slow: the p95 is over 5m once the slow ones reach the top 5 %.
    let status = cutover(&relay).await;
    assert_eq!(status["source"], "guard", "{status}");
    let reason = status["reason"].as_str().unwrap();
    assert!(reason.starts_with("guard: delay p95 10m"), "{reason}");
    assert!(reason.contains("> 5m over 1m"), "{reason}");
    assert_eq!(sink.messages().len(), 0);
    let reply = send(relay.addr, "news@goo.ne.jp", Some(600), "after\r\n").await;
    assert!(reply.starts_with("250"), "{reply}");
    assert_eq!(sink.messages().len(), 1, "after the trip, legacy takes it");
    let metrics = Metrics::of(&relay).await;
    assert!(
        metrics
            .value(
                "ses_relay_delivery_delay_seconds_bucket",
                &[("route", "ses"), ("le", "600")]
            )
            .is_some(),
        "{}",
        metrics.text()
    );
    assert!(relay.stop().await);
    drop(moto);
}

/// SES's account stop (played by the SES fake: moto never pauses an account).
#[tokio::test]
async fn sending_paused_trips_at_once_the_message_gets_451_and_its_retry_goes_to_legacy() {
    let ses = SesFake::start().await;
    ses.set_mode(Mode::Reject(
        "SendingPausedException",
        "Email sending is disabled for your account.",
    ));
    let sink = SmtpSink::start().await;
    let dir = TempDir::new("guard-paused");
    let relay = RunningRelay::start(guard_config(&ses.endpoint(), &sink, &dir, 200)).await;
    let before = Metrics::of(&relay).await;
    let reply = send(relay.addr, "news@goo.ne.jp", None, "paused\r\n").await;
    assert!(reply.starts_with("451 4.7.0"), "{reply}");
    let status = cutover(&relay).await;
    assert_eq!(status["ses_percent"], 0.0, "{status}");
    assert_eq!(status["source"], "guard", "{status}");
    assert_eq!(
        status["reason"], "guard: SES sending paused (SendingPausedException)",
        "{status}"
    );
    // Postfix's retry of the same message goes to legacy.
    let reply = send(relay.addr, "news@goo.ne.jp", None, "paused\r\n").await;
    assert!(reply.starts_with("250"), "{reply}");
    assert_eq!(sink.messages().len(), 1);
    assert_eq!(ses.attempts(), 1, "one SES call, not retried");
    // Every condition's series exists (registered at 0 at startup), and the gauge.
    let after = Metrics::of(&relay).await;
    let trips = "ses_relay_guard_trips_total";
    for condition in [
        "failure-ratio",
        "delay",
        "bounce-ratio",
        "complaint-ratio",
        "ses-paused",
        "reject-ratio",
    ] {
        assert!(
            after.value(trips, &[("condition", condition)]).is_some(),
            "{condition} missing:\n{}",
            after.text()
        );
    }
    assert!(
        after.value("ses_relay_guard_tripped", &[]).is_some(),
        "{}",
        after.text()
    );
    assert!(after.delta(&before, trips, &[("condition", "ses-paused")]) >= 1.0);
    // The status page shows the guard's state, the trip and the figures it watches.
    let page = get(relay.admin(), "/").await.body;
    assert!(page.contains(">Rollback guard</h2>"), "{page}");
    assert!(page.contains(">tripped<"), "{page}");
    assert!(
        page.contains("guard: SES sending paused (SendingPausedException)"),
        "{page}"
    );
    assert!(
        page.contains(concat!(
            "<td data-label=\"condition\">failure ratio (SES upstream)</td>",
            "<td data-label=\"now\">1.00</td><td data-label=\"limit\">0.05</td>",
            "<td data-label=\"counts\"><span data-guard=\"failures\">1</span> of ",
            "<span data-guard=\"outcomes\">1</span></td>"
        )),
        "{page}"
    );
    assert!(page.contains("rollback guard (state file)"), "{page}");
    assert!(relay.stop().await);
}

/// Without `[legacy]` the guard judges and alerts, but the share stays.
#[tokio::test]
async fn without_legacy_the_guard_only_alerts() {
    let ses = SesFake::start().await;
    ses.set_mode(Mode::Reject(
        "NotFoundException",
        "Configuration set <ses-relay> does not exist.",
    ));
    let sink = SmtpSink::start().await;
    let dir = TempDir::new("guard-alert-only");
    let mut config = guard_config(&ses.endpoint(), &sink, &dir, 3);
    config.legacy = None;
    let relay = RunningRelay::start(config).await;
    for _ in 0..4 {
        let reply = send(relay.addr, "news@goo.ne.jp", None, "x\r\n").await;
        assert!(reply.starts_with("554"), "{reply}");
    }
    let status = cutover(&relay).await;
    assert_eq!(status["ses_percent"], 100.0, "{status}");
    assert_ne!(status["source"], "guard", "{status}");
    assert_eq!(status["guard"]["state"], "tripped", "{status}");
    assert_eq!(status["guard"]["can_move_traffic"], false, "{status}");
    assert!(relay.stop().await);
}

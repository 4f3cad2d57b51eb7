//! The rollback guard judges only evidence no sender can forge, end to end
//! with moto as SES v2 and an in-process SMTP sink as the legacy relay:
//! forged old `Received:` headers below the client's move no delay, and SES's
//! `MessageRejected` (moto's answer to a sender whose identity does not exist)
//! from one client trips nothing, from two clients (behind PROXY) trips
//! `reject-ratio`. Skips with the reason printed when moto is missing, unless
//! `SES_RELAY_REQUIRE_PEERS=1`.

mod common;

use std::net::SocketAddr;

use common::admin::cutover;
use common::client::{SmtpClient, deliver};
use common::guard::{guard_config, rfc822};
use common::metrics::Metrics;
use common::peers::{Moto, moto_identity, moto_missing, run_or_skip};
use common::smtp_sink::SmtpSink;
use common::{RunningRelay, TempDir, test_config};

/// A message as the client (our Postfix) hands it over: `received` on top.
fn message(received: &str, from: &str) -> String {
    format!("{received}From: <{from}>\r\nTo: <rcpt@example.net>\r\nSubject: guard\r\n\r\nhello\r\n")
}

/// One transaction through a load balancer that names `client` in a PROXY
/// v1 header; the final reply.
async fn send_as(addr: SocketAddr, client: &str, from: &str) -> String {
    let mut smtp = SmtpClient::connect(addr).await;
    smtp.write(format!("PROXY TCP4 {client} 127.0.0.1 40000 25\r\n"))
        .await;
    let greeting = smtp.reply().await;
    assert!(greeting.starts_with("220"), "{greeting}");
    smtp.ehlo("client.test").await;
    let last = smtp
        .send_mail(from, &["rcpt@example.net"], &message("", from))
        .await;
    smtp.command("QUIT").await;
    last
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forged_old_received_headers_below_the_clients_trip_nothing_and_the_p95_stays_small() {
    if !run_or_skip(
        "forged_old_received_headers_below_the_clients_trip_nothing_and_the_p95_stays_small",
        moto_missing(),
    ) {
        return;
    }
    let moto = tokio::task::spawn_blocking(Moto::start).await.unwrap();
    let config = test_config(&moto.endpoint());
    moto_identity(&moto.endpoint(), "goo.ne.jp", &config.ses.configuration_set).await;
    let sink = SmtpSink::start().await;
    let dir = TempDir::new("guard-forged-received");
    let relay = RunningRelay::start(guard_config(&moto.endpoint(), &sink, &dir, 5)).await;
    // The client's own Received is fresh; below it, the sender's forgery says
    // yesterday (and the day before, in the obsolete `Received :` form).
    for _ in 0..25 {
        let received = format!(
            "Received: from sender.example (sender.example [203.0.113.9])\r\n\tby mx1.goo.ne.jp (Postfix) with ESMTP id 4Abc;\r\n\t{}\r\n\
             Received: from forger by forger; {}\r\n\
             Received : from forger by forger; {}\r\n",
            rfc822(1),
            rfc822(86_400),
            rfc822(2 * 86_400),
        );
        let reply = deliver(
            relay.addr,
            "news@goo.ne.jp",
            &["rcpt@example.net"],
            &message(&received, "news@goo.ne.jp"),
        )
        .await;
        assert!(reply.starts_with("250"), "{reply}");
    }
    // A topmost Received without a date leaves the message out of the delay,
    // whatever the forged one below it says.
    for _ in 0..3 {
        let received = format!(
            "Received: from sender.example by mx1.goo.ne.jp (Postfix)\r\nReceived: from forger by forger; {}\r\n",
            rfc822(86_400)
        );
        let reply = deliver(
            relay.addr,
            "news@goo.ne.jp",
            &["rcpt@example.net"],
            &message(&received, "news@goo.ne.jp"),
        )
        .await;
        assert!(reply.starts_with("250"), "{reply}");
    }
    let status = cutover(&relay).await;
    assert_eq!(status["ses_percent"], 100.0, "{status}");
    assert_eq!(status["guard"]["state"], "armed", "{status}");
    assert_eq!(status["guard"]["outcomes"], 28, "{status}");
    let p95 = status["guard"]["delay_p95_seconds"].as_f64().unwrap();
    assert!(p95 <= 30.0, "p95 {p95} s: the forged dates were read");
    let figures = relay.control.guard.snapshot().figures;
    assert_eq!(figures.delays, 25, "undated topmost headers are left out");
    assert_eq!(sink.messages().len(), 0);
    assert!(relay.stop().await);
    drop(moto);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn message_rejected_from_one_client_trips_nothing_and_from_two_clients_trips_reject_ratio() {
    if !run_or_skip(
        "message_rejected_from_one_client_trips_nothing_and_from_two_clients_trips_reject_ratio",
        moto_missing(),
    ) {
        return;
    }
    let moto = tokio::task::spawn_blocking(Moto::start).await.unwrap();
    let sink = SmtpSink::start().await;
    let dir = TempDir::new("guard-rejected");
    // Nothing verified in moto: SES refuses every sender (MessageRejected).
    let mut config = guard_config(&moto.endpoint(), &sink, &dir, 5);
    config.smtp.proxy_protocol = true;
    config.smtp.proxy_trusted = vec!["127.0.0.1/32".parse().unwrap()];
    let relay = RunningRelay::start(config).await;
    let before = Metrics::of(&relay).await;

    // One broken Postfix: its messages are refused, again and again.
    for i in 0..12 {
        let reply = send_as(relay.addr, "127.0.0.2", "news@unverified.example").await;
        assert!(reply.starts_with("554 5.7.1"), "refusal {i}: {reply}");
    }
    let status = cutover(&relay).await;
    assert_eq!(status["ses_percent"], 100.0, "{status}");
    assert_eq!(status["guard"]["state"], "armed", "{status}");
    assert_eq!(
        status["guard"]["failures"], 0,
        "not failures of SES: {status}"
    );
    let figures = relay.control.guard.snapshot().figures;
    assert_eq!(
        (figures.outcomes, figures.rejected, figures.reject_clients),
        (12, 12, 1)
    );

    // A second client refused too: the identity refuses everyone.
    let reply = send_as(relay.addr, "127.0.0.3", "news@unverified.example").await;
    assert!(reply.starts_with("554 5.7.1"), "{reply}");
    let status = cutover(&relay).await;
    assert_eq!(status["ses_percent"], 0.0, "{status}");
    assert_eq!(status["source"], "guard", "{status}");
    assert_eq!(
        status["reason"], "guard: reject ratio 1.00 > 0.05 over 1m (13 of 13, from 2 clients)",
        "{status}"
    );
    let after = Metrics::of(&relay).await;
    let trips = [("condition", "reject-ratio")];
    assert!(
        after.delta(&before, "ses_relay_guard_trips_total", &trips) >= 1.0,
        "{}",
        after.text()
    );
    // The next transaction goes to legacy.
    let reply = send_as(relay.addr, "127.0.0.2", "news@unverified.example").await;
    assert!(reply.starts_with("250"), "{reply}");
    assert_eq!(sink.messages().len(), 1);
    assert!(relay.stop().await);
    drop(moto);
}

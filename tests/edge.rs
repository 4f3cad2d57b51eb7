//! The edge's defences end to end: the relay on 127.0.0.1:0 over real TCP,
//! the SES v2 fake and an SMTP sink as the legacy relay behind it.

mod common;

use std::net::SocketAddr;
use std::time::Duration;

use common::client::{SmtpClient, smtp};
use common::ses_fake::SesFake;
use common::smtp_sink::SmtpSink;
use common::wait::wait_until_async;
use common::{RunningRelay, test_config};
use ses_relay::config::{HumanDuration, LegacyConfig, LegacyTls};

/// One connection: `wire` in one write, then up to `count` replies (fewer
/// when the relay closes first).
async fn dialogue(addr: SocketAddr, wire: &[u8], count: usize) -> Vec<String> {
    let mut client = SmtpClient::connect(addr).await;
    client.write(wire).await;
    client.replies(count).await
}

/// The code and the start of the text of each reply's last line.
fn codes(replies: &[String]) -> Vec<&str> {
    replies
        .iter()
        .map(|r| {
            let last = r.lines().last().unwrap_or_default();
            &last[..last.len().min(9)]
        })
        .collect()
}

#[tokio::test]
async fn a_smuggled_transaction_in_one_write_never_reaches_ses() {
    let ses = SesFake::start().await;
    let relay = RunningRelay::start(test_config(&ses.endpoint())).await;
    let wire = concat!(
        "EHLO client.test\r\nMAIL FROM:<a@goo.ne.jp>\r\nRCPT TO:<b@example.com>\r\nDATA\r\n",
        "From: a@goo.ne.jp\r\n\r\nbody1\r\n.\r\r\n",
        "MAIL FROM:<smuggled@goo.ne.jp>\r\nRCPT TO:<victim@example.com>\r\nDATA\r\n",
        "From: ceo@goo.ne.jp\r\nSubject: SMUGGLED\r\n\r\nx\r\n.\r\nQUIT\r\n",
    );
    let replies = dialogue(relay.addr, wire.as_bytes(), 7).await;
    assert_eq!(
        codes(&replies),
        [
            "220 relay",
            "250 ENHAN",
            "250 2.1.0",
            "250 2.1.5",
            "354 End d",
            "550 5.5.2",
            "221 2.0.0"
        ],
        "{replies:?}"
    );
    assert!(ses.requests().is_empty());
    assert!(relay.stop().await);
}

#[tokio::test]
async fn quoted_local_parts_reach_ses_and_the_legacy_relay_as_written() {
    let ses = SesFake::start().await;
    let relay = RunningRelay::start(test_config(&ses.endpoint())).await;
    let commands = [
        "EHLO client.test".to_string(),
        "MAIL FROM:<a@goo.ne.jp>".into(),
        "RCPT TO:<\"a b\"@example.com>".into(),
        "DATA".into(),
    ];
    let replies = smtp(relay.addr, &commands, Some("From: a@goo.ne.jp\r\n\r\nhi")).await;
    assert!(replies.last().unwrap().starts_with("250"), "{replies:?}");
    assert_eq!(ses.requests()[0].to, ["\"a b\"@example.com"]);
    assert!(relay.stop().await);

    let sink = SmtpSink::start().await;
    let mut config = test_config(&ses.endpoint());
    config.legacy = Some(LegacyConfig {
        relay: sink.addr.to_string(),
        tls: LegacyTls::None,
        connect_timeout: HumanDuration(Duration::from_secs(2)),
        ..LegacyConfig::default()
    });
    config.cutover.ses_percent = Some(0.0);
    let relay = RunningRelay::start(config).await;
    let replies = smtp(relay.addr, &commands, Some("From: a@goo.ne.jp\r\n\r\nhi")).await;
    assert!(replies.last().unwrap().starts_with("250"), "{replies:?}");
    assert_eq!(sink.messages()[0].rcpt_to, ["\"a b\"@example.com"]);
    assert!(relay.stop().await);
}

#[tokio::test]
async fn a_reload_applies_max_connections() {
    let ses = SesFake::start().await;
    let mut config = test_config(&ses.endpoint());
    config.smtp.max_connections = 1;
    let running = config.clone();
    let relay = RunningRelay::start(config.clone()).await;
    let first = SmtpClient::greeted(relay.addr).await;
    let refused = dialogue(relay.addr, b"", 1).await;
    assert!(refused[0].starts_with("421 4.3.2"), "{refused:?}");

    config.smtp.max_connections = 2;
    ses_relay::daemon::server::reload(&relay.control, &running, &config).expect("reload applies");
    let second = dialogue(relay.addr, b"QUIT\r\n", 2).await;
    assert!(second[0].starts_with("220"), "{second:?}");

    // Lowered again: the open session stays, new ones wait for room.
    config.smtp.max_connections = 1;
    ses_relay::daemon::server::reload(&relay.control, &running, &config).expect("reload applies");
    // Room for one again once the second session (QUIT) has ended.
    let refused = wait_until_async(Duration::from_secs(10), || async {
        let refused = dialogue(relay.addr, b"", 1).await;
        match refused[0].starts_with("421 4.3.2") {
            true => Ok(refused),
            false => Err(format!("{refused:?}")),
        }
    })
    .await;
    assert!(refused[0].starts_with("421 4.3.2"), "{refused:?}");
    drop(first);
    assert!(relay.stop().await);
}

/// A refused message (bare CR, bare LF, NUL: 550 5.5.2; oversize: 552 5.3.4)
/// with the next transaction pipelined behind it in the same write, and with
/// the end marker's last byte in a write of its own: the relay takes exactly
/// the refused message's bytes, so every pipelined command after it is read
/// whole and answered, and only the second message reaches SES.
#[tokio::test]
async fn after_a_refused_message_the_pipelined_transaction_is_read_whole() {
    let ses = SesFake::start().await;
    let mut config = test_config(&ses.endpoint());
    config.smtp.max_message_size = ses_relay::config::ByteSize(200);
    let relay = RunningRelay::start(config).await;
    let oversize = format!(
        "From: a@goo.ne.jp\r\n\r\n{}\r\n..x\r\n.\r\n",
        "y".repeat(300)
    );
    let cases: [(&str, &str); 6] = [
        ("From: a@goo.ne.jp\r\n\r\na\r\r\n.\r\n", "550 5.5.2"),
        ("From: a@goo.ne.jp\r\n\r\na\r\n.\rb\r\n.\r\n", "550 5.5.2"),
        ("From: a@goo.ne.jp\r\n\r\na\r\n.\r\r\n.\r\n", "550 5.5.2"),
        ("From: a@goo.ne.jp\r\n\r\na\n\r\n.\r\n", "550 5.5.2"),
        ("From: a@goo.ne.jp\r\n\r\na\0\r\n.\r\n", "550 5.5.2"),
        (&oversize, "552 5.3.4"),
    ];
    let mut sent = 0;
    for (refused, code) in cases {
        for split in [false, true] {
            let first = concat!(
                "EHLO client.test\r\nMAIL FROM:<a@goo.ne.jp>\r\n",
                "RCPT TO:<b@example.com>\r\nDATA\r\n"
            );
            let next = concat!(
                "RSET\r\nMAIL FROM:<c@goo.ne.jp>\r\nRCPT TO:<d@example.com>\r\nDATA\r\n",
                "From: c@goo.ne.jp\r\nSubject: second\r\n\r\nx\r\n.\r\nQUIT\r\n"
            );
            let mut client = SmtpClient::connect(relay.addr).await;
            client.stream().set_nodelay(true).unwrap();
            let body = refused.as_bytes();
            let whole = [first.as_bytes(), body, next.as_bytes()].concat();
            if split {
                // The marker's last byte alone, then the pipelined commands:
                // the pauses are under test, so each write arrives in a read
                // of its own.
                let cut = first.len() + body.len() - 1;
                client.write(&whole[..cut]).await;
                tokio::time::sleep(Duration::from_millis(50)).await;
                client.write(&whole[cut..cut + 1]).await;
                tokio::time::sleep(Duration::from_millis(50)).await;
                client.write(&whole[cut + 1..]).await;
            } else {
                client.write(&whole).await;
            }
            let replies = client.replies(12).await;
            assert_eq!(
                codes(&replies),
                [
                    "220 relay",
                    "250 ENHAN",
                    "250 2.1.0",
                    "250 2.1.5",
                    "354 End d",
                    code,
                    "250 2.0.0",
                    "250 2.1.0",
                    "250 2.1.5",
                    "354 End d",
                    "250 2.0.0",
                    "221 2.0.0"
                ],
                "{refused:?} split={split}: {replies:?}"
            );
            sent += 1;
            let requests = ses.requests();
            assert_eq!(requests.len(), sent, "{refused:?} split={split}");
            let last = requests.last().unwrap();
            assert_eq!(last.to, ["d@example.com"]);
            let raw = String::from_utf8_lossy(&last.raw);
            assert!(raw.ends_with("Subject: second\r\n\r\nx\r\n"), "{raw}");
        }
    }
    assert!(relay.stop().await);
}

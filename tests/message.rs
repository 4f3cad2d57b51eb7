//! The message SES receives, end to end: the relay on 127.0.0.1 with the SES
//! v2 fake behind it, fed crafted messages over raw SMTP. Exactly one
//! DKIM-Signature (ours, verified by mail-auth, and by dkimpy in tests of their
//! own, ignored by libtest with the reason where the test venv is absent),
//! exactly one From, no client X-SES-* header, the client's tags in
//! `EmailTags`, and internationalized addresses kept away from SES.

mod common;

use std::net::SocketAddr;

use common::client::SmtpClient;
use common::peers::dkimpy_verify;
use common::ses_fake::{SendEmail, SesFake};
use common::{RunningRelay, TempDir, demo_txt, header_names, test_config, verify_dkim};
use mail_auth::DkimResult;
use ses_relay::config::{LegacyConfig, LegacyMode};

/// One transaction over raw SMTP (`mail` is what follows `MAIL FROM:`): every
/// reply, greeting first. The message is sent as bytes, so it may hold
/// anything the client likes.
async fn transaction(addr: SocketAddr, mail: &str, rcpts: &[&str], message: &[u8]) -> Vec<String> {
    let mut client = SmtpClient::connect(addr).await;
    let mut replies = vec![client.reply().await];
    let mut commands: Vec<String> = vec!["EHLO client.test".into(), format!("MAIL FROM:{mail}")];
    commands.extend(rcpts.iter().map(|r| format!("RCPT TO:<{r}>")));
    commands.push("DATA".into());
    for command in commands {
        replies.push(client.command(&command).await);
    }
    if replies.last().unwrap().starts_with("354") {
        replies.push(client.data_message(message).await);
    }
    replies
}

fn last(replies: &[String]) -> &str {
    replies.last().unwrap()
}

/// One message carrying foreign signatures, X-SES-* headers and tags, sent
/// through a relay with a configured tag: what SES received.
async fn hardened_message() -> SendEmail {
    let ses = SesFake::start().await;
    let mut config = test_config(&ses.endpoint());
    config.ses.tags.insert("service".into(), "goo-mail".into());
    let relay = RunningRelay::start(config).await;
    let message =
        b"DKIM-Signature: v=1; a=rsa-sha256; d=goo.ne.jp; s=old; h=from; bh=x; b=AAAA\r\n\
DKIM-Signature: v=1; a=rsa-sha256; d=bank.example; s=x; h=from;\r\n\tbh=y; b=BBBB\r\n\
dkim-signature : v=1; d=goo.ne.jp; s=bin\xff\xfe; b=CCCC\r\n\
X-SES-CONFIGURATION-SET: attacker-set\r\n\
x-ses-source-arn: arn:aws:ses:ap-northeast-1:000000000000:identity/bank.example\r\n\
X-Ses-Message-Tags: campaign=winter, service=attacker, bad.tag=x\r\n\
From: Goo News <news@goo.ne.jp>\r\n\
To: b@example.com\r\n\
Subject: hardened\r\n\
Message-ID: <hardened-1@goo.ne.jp>\r\n\
\r\n\
Body.\r\n";
    let replies = transaction(relay.addr, "<news@goo.ne.jp>", &["b@example.com"], message).await;
    assert!(last(&replies).starts_with("250 2.0.0"), "{replies:?}");
    relay.stop().await;
    let mut sent = ses.requests();
    assert_eq!(sent.len(), 1);
    sent.remove(0)
}

#[tokio::test]
async fn foreign_signatures_and_ses_headers_are_gone_and_tags_become_email_tags() {
    let sent = hardened_message().await;
    let raw = &sent.raw;
    let names = header_names(raw);
    let signatures = names
        .iter()
        .filter(|n| n.trim().eq_ignore_ascii_case("DKIM-Signature"))
        .count();
    assert_eq!(signatures, 1, "{}", String::from_utf8_lossy(raw));
    let ses_headers: Vec<&String> = names
        .iter()
        .filter(|n| n.to_ascii_lowercase().starts_with("x-ses-"))
        .collect();
    assert_eq!(ses_headers, ["X-SES-CONFIGURATION-SET"]);
    let text = String::from_utf8_lossy(raw);
    for gone in ["AAAA", "BBBB", "CCCC", "attacker", "identity/bank.example"] {
        assert!(!text.contains(gone), "{gone} left in:\n{text}");
    }
    let results = verify_dkim(raw, "gooid-21-prod", "goo.ne.jp", &demo_txt()).await;
    assert_eq!(results, [DkimResult::Pass], "{text}");
    assert_eq!(
        sent.tags,
        [
            ("service".to_string(), "goo-mail".to_string()),
            ("campaign".to_string(), "winter".to_string())
        ]
    );
}

#[tokio::test]
#[cfg_attr(
    not(has_dkimpy),
    ignore = "needs dkimpy (the test venv): run tests/peers/install.sh"
)]
async fn dkimpy_verifies_the_one_signature_left_after_foreign_ones_are_removed() {
    let raw = hardened_message().await.raw;
    let (ok, verdict) = dkimpy_verify(&raw, &demo_txt());
    assert!(ok, "dkimpy: {verdict}\n{}", String::from_utf8_lossy(&raw));
    assert!(
        verdict.starts_with("pass d=goo.ne.jp s=gooid-21-prod"),
        "{verdict}"
    );
}

#[tokio::test]
async fn froms_and_signatures_ses_would_refuse_are_refused_before_any_call() {
    let ses = SesFake::start().await;
    let relay = RunningRelay::start(test_config(&ses.endpoint())).await;
    let cases: [(&[u8], &str); 4] = [
        (
            b"From: ceo@bank.example\r\nFrom: e@goo.ne.jp\r\nSubject: x\r\n\r\nx\r\n",
            "550 5.6.0",
        ),
        (
            b"FROM: ceo@bank.example\r\nfrom : e@goo.ne.jp\r\n\r\nx\r\n",
            "550 5.6.0",
        ),
        (b"Subject: no from\r\n\r\nx\r\n", "550 5.6.0"),
        (
            b"DKIM-Signature: v=1; d=example.com; b=A\r\nDKIM-Signature: v=1; d=example.net; b=B\r\nFrom: a@example.com\r\n\r\nx\r\n",
            "554 5.6.0",
        ),
    ];
    for (message, expected) in cases {
        let replies = transaction(relay.addr, "<e@goo.ne.jp>", &["b@example.com"], message).await;
        assert!(
            last(&replies).starts_with(expected),
            "{}: {replies:?}",
            String::from_utf8_lossy(message)
        );
    }
    assert_eq!(ses.attempts(), 0, "nothing reached SES");
    // One foreign signature and no key of ours: it stays, alone.
    let one = b"DKIM-Signature: v=1; d=example.com; b=A\r\nFrom: a@example.com\r\n\r\nx\r\n";
    let replies = transaction(relay.addr, "<a@example.com>", &["b@example.com"], one).await;
    assert!(last(&replies).starts_with("250"), "{replies:?}");
    let raw = String::from_utf8_lossy(&ses.requests()[0].raw).into_owned();
    assert_eq!(raw.matches("DKIM-Signature:").count(), 1, "{raw}");
    assert!(raw.contains("d=example.com"), "{raw}");
    relay.stop().await;
}

#[tokio::test]
async fn internationalized_addresses_go_to_legacy_or_get_553_on_ses() {
    let ses = SesFake::start().await;
    let dir = TempDir::new("idn");
    let mut config = test_config(&ses.endpoint());
    config.legacy = Some(LegacyConfig {
        mode: LegacyMode::Outbox,
        outbox_dir: dir.path("legacy"),
        ..LegacyConfig::default()
    });
    config.cutover.ses_percent = Some(100.0);
    let relay = RunningRelay::start(config).await;
    let message = b"From: a@goo.ne.jp\r\nSubject: idn\r\n\r\nx\r\n";
    let replies = transaction(
        relay.addr,
        "<a@goo.ne.jp> SMTPUTF8",
        &["\u{5c71}\u{7530}@example.jp"],
        message,
    )
    .await;
    assert!(last(&replies).starts_with("250 2.0.0"), "{replies:?}");
    assert_eq!(ses.attempts(), 0, "100 % SES, yet it went to legacy");
    let written: Vec<_> = std::fs::read_dir(dir.path("legacy"))
        .unwrap()
        .filter_map(|e| e.ok())
        .filter(|e| e.path().extension().is_some_and(|x| x == "json"))
        .collect();
    assert_eq!(written.len(), 1);
    let envelope = std::fs::read_to_string(written[0].path()).unwrap();
    assert!(envelope.contains("\"route\": \"legacy\""), "{envelope}");
    // An ASCII first recipient goes to SES, and a later non-ASCII one is refused there.
    let replies = transaction(
        relay.addr,
        "<a@goo.ne.jp> SMTPUTF8",
        &["b@example.com", "\u{5c71}\u{7530}@example.jp"],
        message,
    )
    .await;
    assert!(replies[4].starts_with("553 5.6.7"), "{replies:?}");
    assert!(last(&replies).starts_with("250"), "{replies:?}");
    assert_eq!(ses.requests()[0].to, ["b@example.com"]);
    relay.stop().await;
}

/// Odd case and folded; then white space before the colon (RFC 5322's
/// obsolete syntax, which dkimpy refuses to parse, so only mail-auth checks
/// it): each message as SES received it, with whether dkimpy can read it.
async fn odd_froms() -> Vec<(Vec<u8>, bool)> {
    let ses = SesFake::start().await;
    let relay = RunningRelay::start(test_config(&ses.endpoint())).await;
    let messages: [(&[u8], bool); 2] = [
        (
            b"fROM:\r\n Goo <news@goo.ne.jp>\r\nTo: b@example.com\r\nSubject: odd\r\n\r\nx\r\n",
            true,
        ),
        (
            b"From : news@goo.ne.jp\r\nTo: b@example.com\r\nSubject: spaced\r\n\r\nx\r\n",
            false,
        ),
    ];
    for (message, _) in messages {
        let replies =
            transaction(relay.addr, "<news@goo.ne.jp>", &["b@example.com"], message).await;
        assert!(last(&replies).starts_with("250 2.0.0"), "{replies:?}");
    }
    relay.stop().await;
    let sent = ses.requests();
    assert_eq!(sent.len(), messages.len());
    sent.into_iter()
        .zip(messages)
        .map(|(request, (_, dkimpy))| (request.raw, dkimpy))
        .collect()
}

#[tokio::test]
async fn a_from_written_oddly_is_still_the_one_signed() {
    for (raw, _) in odd_froms().await {
        let text = String::from_utf8_lossy(&raw).into_owned();
        assert!(text.contains("d=goo.ne.jp"), "{text}");
        let results = verify_dkim(&raw, "gooid-21-prod", "goo.ne.jp", &demo_txt()).await;
        assert_eq!(results, [DkimResult::Pass], "{text}");
    }
}

#[tokio::test]
#[cfg_attr(
    not(has_dkimpy),
    ignore = "needs dkimpy (the test venv): run tests/peers/install.sh"
)]
async fn dkimpy_verifies_a_from_written_oddly() {
    let readable: Vec<Vec<u8>> = odd_froms()
        .await
        .into_iter()
        .filter(|(_, dkimpy)| *dkimpy)
        .map(|(raw, _)| raw)
        .collect();
    assert_eq!(readable.len(), 1);
    for raw in readable {
        let (ok, verdict) = dkimpy_verify(&raw, &demo_txt());
        assert!(ok, "dkimpy: {verdict}\n{}", String::from_utf8_lossy(&raw));
    }
}

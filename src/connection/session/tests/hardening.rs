//! Session tests of the edge's defences: smuggling, control bytes, 8-bit
//! paths, SIZE overflow, the memory budget, reloads, error counting.

use tokio::io::AsyncWriteExt;

use super::*;

impl TestSession {
    async fn send_bytes(&mut self, bytes: &[u8]) {
        self.stream.write_all(bytes).await.unwrap();
    }
}

#[tokio::test]
async fn a_transaction_smuggled_behind_a_fake_end_marker_is_one_refused_message() {
    let upstream = Upstream::new();
    let mut s = TestSession::start(context(smtp_config(), upstream.clone())).await;
    s.ehlo().await;
    s.mail_from("a@goo.ne.jp", "250").await;
    s.rcpt_to("b@example.com", "250").await;
    s.cmd("DATA", "354").await;
    s.send(concat!(
        "From: a@goo.ne.jp\r\n\r\nbody1\r\n.\r\r\n",
        "MAIL FROM:<smuggled@goo.ne.jp>\r\nRCPT TO:<victim@example.com>\r\nDATA\r\n",
        "From: ceo@goo.ne.jp\r\nSubject: SMUGGLED\r\n\r\nx\r\n.\r\n",
    ))
    .await;
    s.expect("550 5.5.2").await;
    // Had the fake marker ended DATA, the smuggled MAIL, RCPT and DATA would
    // have been answered before this NOOP.
    s.cmd("NOOP", "250 2.0.0").await;
    assert_eq!(upstream.count(), 0);
}

#[tokio::test]
async fn a_nul_byte_in_the_message_is_refused() {
    let upstream = Upstream::new();
    let mut s = TestSession::start(context(smtp_config(), upstream.clone())).await;
    s.ehlo().await;
    s.mail_from("a@goo.ne.jp", "250").await;
    s.rcpt_to("b@example.com", "250").await;
    s.cmd("DATA", "354").await;
    s.send_bytes(b"From: a@goo.ne.jp\r\n\r\nbody\r\n.\0\r\nMAIL FROM:<x@y.example>\r\n.\r\n")
        .await;
    s.expect("550 5.5.2").await;
    s.cmd("NOOP", "250").await;
    assert_eq!(upstream.count(), 0);
}

#[tokio::test]
async fn an_8bit_reverse_path_needs_smtputf8() {
    let mut s = TestSession::start(context(smtp_config(), Upstream::new())).await;
    s.ehlo().await;
    s.cmd("MAIL FROM:<\u{5c71}\u{7530}@goo.ne.jp>", "553 5.6.7")
        .await;
    s.cmd("MAIL FROM:<caf\u{e9}@goo.ne.jp> BODY=8BITMIME", "553 5.6.7")
        .await;
    s.cmd("MAIL FROM:<\u{5c71}\u{7530}@goo.ne.jp> SMTPUTF8", "250")
        .await;
}

#[tokio::test]
async fn an_overflowing_size_is_over_the_limit() {
    let mut s = TestSession::start(context(smtp_config(), Upstream::new())).await;
    s.ehlo().await;
    let reply = s
        .cmd(
            "MAIL FROM:<a@goo.ne.jp> SIZE=1000000000000000000000000",
            "5",
        )
        .await;
    assert!(
        reply.starts_with("552 5.3.4") || reply.starts_with("501"),
        "{reply}"
    );
    let reply = s
        .cmd("MAIL FROM:<a@goo.ne.jp> SIZE=18446744073709551617", "5")
        .await;
    assert!(
        reply.starts_with("552 5.3.4") || reply.starts_with("501"),
        "{reply}"
    );
    s.cmd("MAIL FROM:<a@goo.ne.jp> SIZE=9999", "250").await;
}

#[tokio::test]
async fn control_bytes_are_refused_in_helo_and_addresses() {
    let upstream = Upstream::new();
    let mut s = TestSession::start(context(smtp_config(), upstream.clone())).await;
    s.send_bytes(b"EHLO evil\x01.example\r\n").await;
    s.expect("501 5.5.4").await;
    s.send_bytes(b"HELO a\rb\r\n").await;
    s.expect("501 5.5.4").await;
    s.ehlo().await;
    s.send_bytes(b"MAIL FROM:<\"a\x08b\"@goo.ne.jp>\r\n").await;
    s.expect("553 5.1.3").await;
    s.mail_from("a@goo.ne.jp", "250").await;
    s.send_bytes(b"RCPT TO:<\"x\x7f\"@example.com>\r\n").await;
    s.expect("553 5.1.3").await;
    s.send_bytes(b"RCPT TO:<x@exa\x1bmple.com>\r\n").await;
    s.expect("553 5.1.3").await;
    s.rcpt_to("ok@example.com", "250").await;
    s.data(MESSAGE, "250").await;
    let (envelope, message) = upstream.last();
    assert_eq!(envelope.helo, "client.test");
    assert!(
        !message
            .bytes()
            .any(|b| b < 0x20 && b != b'\r' && b != b'\n' && b != b'\t')
    );
}

#[tokio::test]
async fn quoted_local_parts_reach_the_upstream_as_written() {
    let upstream = Upstream::new();
    let mut s = TestSession::start(context(smtp_config(), upstream.clone())).await;
    s.ehlo().await;
    s.cmd("MAIL FROM:<\"first last\"@goo.ne.jp>", "250").await;
    s.cmd("RCPT TO:<\"a b\"@example.com>", "250").await;
    s.cmd("RCPT TO:<\"c\\\"d\"@example.com>", "250").await;
    s.data(MESSAGE, "250").await;
    let (envelope, _) = upstream.last();
    assert_eq!(envelope.mail.address, "\"first last\"@goo.ne.jp");
    assert_eq!(
        envelope.rcpt_to,
        ["\"a b\"@example.com", "\"c\\\"d\"@example.com"]
    );
}

#[tokio::test]
async fn a_message_past_the_memory_budget_is_drained_and_deferred() {
    let upstream = Upstream::new();
    let smtp = SmtpConfig {
        max_data_memory: ByteSize(12_000),
        ..smtp_config()
    };
    let context = context(smtp, upstream.clone());
    let line = format!("{}\r\n", "x".repeat(998));
    let mut first = TestSession::start(context.clone()).await;
    first.ehlo().await;
    first.mail_from("a@goo.ne.jp", "250").await;
    first.rcpt_to("b@example.com", "250").await;
    first.cmd("DATA", "354").await;
    first.send("From: a@goo.ne.jp\r\n\r\n").await;
    for _ in 0..8 {
        first.send(&line).await;
    }
    // The first session's task holds its 8,000 bytes before the second starts.
    for _ in 0..5000 {
        if context.reloadable.data_memory().held() >= 8000 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    assert!(context.reloadable.data_memory().held() >= 8000);
    let mut second = TestSession::start(context.clone()).await;
    second.ehlo().await;
    second.mail_from("c@goo.ne.jp", "250").await;
    second.rcpt_to("d@example.com", "250").await;
    second.cmd("DATA", "354").await;
    second.send("From: c@goo.ne.jp\r\n\r\n").await;
    for _ in 0..8 {
        second.send(&line).await;
    }
    second.send(".\r\n").await;
    second.expect("452 4.3.1").await;
    second.cmd("NOOP", "250").await;
    first.send(".\r\n").await;
    first.expect("250").await;
    assert_eq!(upstream.count(), 1);
    assert_eq!(context.reloadable.data_memory().held(), 0);
}

#[tokio::test]
async fn a_reload_that_drops_the_client_network_closes_its_session_at_the_next_command() {
    let upstream = Upstream::new();
    let allowed = SmtpConfig {
        allowed_clients: vec!["10.0.0.0/8".parse().unwrap()],
        ..smtp_config()
    };
    let context = context(allowed.clone(), upstream.clone());
    let mut s = TestSession::start(context.clone()).await;
    s.ehlo().await;
    s.mail_from("a@goo.ne.jp", "250").await;
    s.rcpt_to("b@example.com", "250").await;
    // A reload that keeps the network changes nothing.
    context.reloadable.replace(live(allowed));
    s.cmd("DATA", "354").await;
    s.send("From: a@goo.ne.jp\r\n\r\nhalf\r\n").await;
    context.reloadable.replace(live(SmtpConfig {
        allowed_clients: vec!["192.0.2.0/24".parse().unwrap()],
        ..smtp_config()
    }));
    // The transaction in DATA finishes; the next command ends the session.
    s.send("rest\r\n.\r\n").await;
    s.expect("250").await;
    s.cmd("MAIL FROM:<a@goo.ne.jp>", "421 4.7.1").await;
    s.closed().await;
    assert_eq!(upstream.count(), 1);
}

#[tokio::test]
async fn data_pipelined_behind_refused_recipients_is_not_an_error() {
    let mut s = TestSession::start(context(smtp_config(), Upstream::new())).await;
    s.ehlo().await;
    // Twelve transactions whose only recipient is refused, each with its
    // pipelined DATA: more than the error limit, yet the session stays open.
    for _ in 0..12 {
        s.send("MAIL FROM:<a@goo.ne.jp>\r\nRCPT TO:<\u{5c71}@example.jp>\r\nDATA\r\nRSET\r\n")
            .await;
        s.expect("250").await;
        s.expect("553 5.6.7").await;
        s.expect("554 5.5.1").await;
        s.expect("250").await;
    }
    s.cmd("NOOP", "250").await;
    // A DATA with no RCPT at all is still the client's mistake.
    for _ in 0..9 {
        s.cmd("MAIL FROM:<a@goo.ne.jp>", "250").await;
        s.cmd("DATA", "554 5.5.1").await;
        s.cmd("RSET", "250").await;
    }
    s.cmd("MAIL FROM:<a@goo.ne.jp>", "250").await;
    s.cmd("DATA", "554 5.5.1").await;
    s.expect("421 4.7.0").await;
}

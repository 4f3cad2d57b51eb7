//! End to end in one process: the relay on 127.0.0.1:0, driven by a real SMTP
//! client (mail-send) or raw commands, delivering to the in-process SES v2
//! fake through the relay's real SES client (signed HTTP, as to AWS).

mod common;

use std::time::Duration;

use common::client::{BODY, SmtpClient, refused_code, send};
use common::ses_fake::{Mode, SesFake};
use common::wait::{ok_if, wait_until_async};
use common::{RunningRelay, TempDir, TestCa, demo_txt, header_names, test_config, verify_dkim};
use mail_auth::DkimResult;
use mail_send::SmtpClientBuilder;
use mail_send::smtp::message::Message;
use ses_relay::config::SesMode;
use tokio::net::TcpStream;

/// A connection and its greeting.
async fn connect(addr: std::net::SocketAddr) -> (SmtpClient, String) {
    let mut client = SmtpClient::connect(addr).await;
    let greeting = client.reply().await;
    (client, greeting)
}

/// Sends one message over STARTTLS (or implicit TLS) with a client that trusts
/// only `ca`; returns the final reply code.
async fn send_over_tls(port: u16, ca: &TestCa, implicit: bool) -> u16 {
    let mut client =
        SmtpClientBuilder::new_with_tls_connector("127.0.0.1".to_string(), port, ca.connector())
            .helo_host("client.test")
            .implicit_tls(implicit)
            .timeout(Duration::from_secs(30))
            .connect()
            .await
            .expect("TLS handshake with the test CA");
    let response = client
        .send(Message::new(
            "a@goo.ne.jp",
            ["b@example.com"],
            BODY.as_bytes(),
        ))
        .await
        .unwrap();
    let _ = client.quit().await;
    response.code
}

async fn assert_signed_once(raw: &[u8]) {
    let text = String::from_utf8_lossy(raw);
    assert_eq!(text.matches("DKIM-Signature:").count(), 1, "{text}");
    let results = verify_dkim(raw, "gooid-21-prod", "goo.ne.jp", &demo_txt()).await;
    assert_eq!(
        results,
        vec![DkimResult::Pass],
        "mail-auth verification of\n{text}"
    );
    // The check can fail: one changed body byte breaks it.
    let tampered = text.replacen("\r\n\r\n", "\r\n\r\nX", 1);
    let results = verify_dkim(
        tampered.as_bytes(),
        "gooid-21-prod",
        "goo.ne.jp",
        &demo_txt(),
    )
    .await;
    assert_ne!(
        results,
        vec![DkimResult::Pass],
        "tampered message still passes"
    );
}

#[tokio::test]
async fn plain_delivery_reaches_ses_signed_with_the_configuration_set() {
    let ses = SesFake::start().await;
    let relay = RunningRelay::start(test_config(&ses.endpoint())).await;
    let reply = send(
        &relay,
        "a@goo.ne.jp",
        &["b@example.com", "hidden@example.org"],
        BODY,
    )
    .await
    .unwrap();
    assert!(
        reply.starts_with("250 2.0.0 Ok: queued as fake-0001 [id "),
        "{reply}"
    );
    let requests = ses.requests();
    assert_eq!(requests.len(), 1);
    let sent = &requests[0];
    assert!(sent.authorization, "request is SigV4-signed");
    assert_eq!(sent.from.as_deref(), Some("a@goo.ne.jp"));
    // The Bcc-only recipient is in Destination too.
    assert_eq!(sent.to, ["b@example.com", "hidden@example.org"]);
    assert_eq!(
        sent.configuration_set.as_deref(),
        Some("ses-migration-production-config-set")
    );
    assert_eq!(
        header_names(&sent.raw)[..3],
        ["X-SES-CONFIGURATION-SET", "DKIM-Signature", "Received"]
    );
    assert!(
        String::from_utf8_lossy(&sent.raw)
            .starts_with("X-SES-CONFIGURATION-SET: ses-migration-production-config-set\r\n")
    );
    assert_signed_once(&sent.raw).await;
    assert!(relay.stop().await);
}

#[tokio::test]
async fn starttls_with_a_test_ca() {
    let ses = SesFake::start().await;
    let ca = TestCa::new();
    let mut config = test_config(&ses.endpoint());
    config.smtp.tls = Some(ca.tls_config());
    config.smtp.require_tls = true;
    let relay = RunningRelay::start(config).await;

    // Plaintext: STARTTLS is offered, MAIL is refused until it is used.
    let (mut raw, _) = connect(relay.addr).await;
    let ehlo = raw.expect("EHLO client.test", "250").await;
    assert!(ehlo.contains("STARTTLS"), "{ehlo}");
    raw.expect("MAIL FROM:<a@goo.ne.jp>", "530 5.7.0").await;

    // A client that trusts only the test CA verifies the certificate and sends.
    assert_eq!(send_over_tls(relay.addr.port(), &ca, false).await, 250);
    let raw_msg = String::from_utf8_lossy(&ses.requests()[0].raw).to_string();
    assert!(
        raw_msg.contains("with ESMTPS id"),
        "Received says TLS: {raw_msg}"
    );
    assert!(relay.stop().await);
}

#[tokio::test]
async fn implicit_tls_listener() {
    let ses = SesFake::start().await;
    let ca = TestCa::new();
    let mut config = test_config(&ses.endpoint());
    config.smtp.tls = Some(ca.tls_config());
    config.smtp.listen_tls = vec!["127.0.0.1:0".parse().unwrap()];
    let relay = RunningRelay::start(config).await;
    let port = relay.tls_addr.unwrap().port();
    assert_eq!(send_over_tls(port, &ca, true).await, 250);
    assert_eq!(ses.requests().len(), 1);
    assert!(relay.stop().await);
}

#[tokio::test]
async fn pipelining_8bit_body_and_null_sender() {
    let ses = SesFake::start().await;
    let relay = RunningRelay::start(test_config(&ses.endpoint())).await;
    let (mut raw, _) = connect(relay.addr).await;
    raw.expect("EHLO client.test", "250").await;
    let body = "From: =?UTF-8?B?5pel5pys?= <news@goo.ne.jp>\r\nSubject: =?UTF-8?B?5pel5pys?=\r\nContent-Type: text/plain; charset=UTF-8\r\nContent-Transfer-Encoding: 8bit\r\n\r\n日本語の本文です。\r\n..leading dot\r\n";
    raw.write(&format!(
        "MAIL FROM:<> BODY=8BITMIME\r\nRCPT TO:<b@example.com>\r\nRCPT TO:<c@example.com>\r\nDATA\r\n{body}.\r\nQUIT\r\n"
    ))
    .await;
    for code in ["250 2.1.0", "250 2.1.5", "250 2.1.5", "354"] {
        let reply = raw.reply().await;
        assert!(reply.starts_with(code), "expected {code}, got {reply}");
    }
    let reply = raw.reply().await;
    assert!(reply.starts_with("250 2.0.0"), "{reply}");
    assert!(raw.reply().await.starts_with("221"));
    let sent = &ses.requests()[0];
    assert_eq!(sent.from, None, "null sender: no FromEmailAddress");
    let text = String::from_utf8(sent.raw.clone()).unwrap();
    assert!(
        text.ends_with("\r\n\r\n日本語の本文です。\r\n.leading dot\r\n"),
        "8-bit body kept, dot unstuffed: {text}"
    );
    assert_signed_once(&sent.raw).await;
    assert!(relay.stop().await);
}

#[tokio::test]
async fn fifty_one_recipients_get_452_for_the_last() {
    let ses = SesFake::start().await;
    let relay = RunningRelay::start(test_config(&ses.endpoint())).await;
    let (mut raw, _) = connect(relay.addr).await;
    raw.expect("EHLO client.test", "250").await;
    raw.expect("MAIL FROM:<a@goo.ne.jp>", "250").await;
    for i in 0..50 {
        raw.expect(&format!("RCPT TO:<r{i}@example.com>"), "250 2.1.5")
            .await;
    }
    raw.expect("RCPT TO:<r50@example.com>", "452 4.5.3").await;
    raw.expect("DATA", "354").await;
    raw.write(&format!("{BODY}.\r\n")).await;
    assert!(raw.reply().await.starts_with("250 2.0.0"));
    assert_eq!(ses.requests()[0].to.len(), 50);
    assert!(relay.stop().await);
}

#[tokio::test]
async fn oversize_message_gets_552_and_nothing_is_sent() {
    let ses = SesFake::start().await;
    let mut config = test_config(&ses.endpoint());
    config.smtp.max_message_size = ses_relay::config::ByteSize(64 * 1024);
    let relay = RunningRelay::start(config).await;
    let big = format!("{BODY}{}", format!("{}\r\n", "x".repeat(76)).repeat(1000));
    let (code, esc, _) = refused_code(
        send(&relay, "a@goo.ne.jp", &["b@example.com"], &big)
            .await
            .unwrap_err(),
    );
    assert_eq!((code, esc), (552, [5, 3, 4]));
    assert_eq!(ses.attempts(), 0);
    assert!(relay.stop().await);
}

#[tokio::test]
async fn client_outside_allowed_networks_gets_554_at_connect() {
    let ses = SesFake::start().await;
    let mut config = test_config(&ses.endpoint());
    config.smtp.allowed_clients = vec!["10.99.0.0/16".parse().unwrap()];
    let relay = RunningRelay::start(config).await;
    let (_, greeting) = connect(relay.addr).await;
    assert!(greeting.starts_with("554 5.7.1"), "{greeting}");
    assert!(relay.stop().await);
}

#[tokio::test]
async fn connection_cap_answers_421_at_once() {
    let ses = SesFake::start().await;
    let mut config = test_config(&ses.endpoint());
    config.smtp.max_connections = 1;
    let relay = RunningRelay::start(config).await;
    let (mut first, greeting) = connect(relay.addr).await;
    assert!(greeting.starts_with("220"));
    let (_, refused) = connect(relay.addr).await;
    assert!(refused.starts_with("421 4.3.2"), "{refused}");
    first.expect("QUIT", "221").await;
    drop(first);
    // The slot frees once the first session has ended.
    wait_until_async(Duration::from_secs(10), || async {
        let greeting = connect(relay.addr).await.1;
        ok_if(greeting.starts_with("220"), greeting)
    })
    .await;
    assert!(relay.stop().await);
}

#[tokio::test]
async fn max_send_rate_defers_what_would_wait_too_long() {
    let ses = SesFake::start().await;
    let mut config = test_config(&ses.endpoint());
    config.ses.max_send_rate = 1.0;
    let relay = RunningRelay::start(config).await;
    let rcpts: Vec<String> = (0..20).map(|i| format!("r{i}@example.com")).collect();
    let rcpts: Vec<&str> = rcpts.iter().map(String::as_str).collect();
    let (code, esc, _) = refused_code(send(&relay, "a@goo.ne.jp", &rcpts, BODY).await.unwrap_err());
    assert_eq!((code, esc), (451, [4, 7, 0]));
    assert_eq!(ses.attempts(), 0);
    // One recipient fits the burst.
    assert!(
        send(&relay, "a@goo.ne.jp", &["b@example.com"], BODY)
            .await
            .is_ok()
    );
    assert!(relay.stop().await);
}

#[tokio::test]
async fn an_earlier_signature_for_our_domain_is_replaced() {
    let ses = SesFake::start().await;
    let relay = RunningRelay::start(test_config(&ses.endpoint())).await;
    let presigned = format!(
        "DKIM-Signature: v=1; a=rsa-sha256; c=relaxed/relaxed; d=goo.ne.jp; s=old;\r\n h=From; bh=AAAA; b=BBBB\r\n{BODY}"
    );
    send(&relay, "a@goo.ne.jp", &["b@example.com"], &presigned)
        .await
        .unwrap();
    assert_signed_once(&ses.requests()[0].raw).await;
    assert!(relay.stop().await);
}

#[tokio::test]
async fn outbox_mode_writes_the_message_and_envelope() {
    let dir = TempDir::new("outbox");
    let mut config = test_config("");
    config.ses.mode = SesMode::Outbox;
    config.ses.outbox_dir = dir.path("out");
    let relay = RunningRelay::start(config).await;
    let reply = send(&relay, "a@goo.ne.jp", &["b@example.com"], BODY)
        .await
        .unwrap();
    let id = reply
        .split("queued as ")
        .nth(1)
        .and_then(|rest| rest.split_whitespace().next())
        .unwrap()
        .to_string();
    let eml = std::fs::read(dir.path("out").join(format!("{id}.eml"))).unwrap();
    let json: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.path("out").join(format!("{id}.json"))).unwrap())
            .unwrap();
    assert_eq!(json["rcpt_to"][0], "b@example.com");
    assert_eq!(json["mail_from"], "a@goo.ne.jp");
    assert_signed_once(&eml).await;
    let leftovers: Vec<_> = std::fs::read_dir(dir.path("out"))
        .unwrap()
        .filter_map(|e| e.ok())
        .filter(|e| e.file_name().to_string_lossy().ends_with(".tmp"))
        .collect();
    assert!(leftovers.is_empty(), "no temporary files left");
    assert!(relay.stop().await);
}

#[tokio::test]
async fn graceful_shutdown_finishes_the_transaction_in_flight() {
    let ses = SesFake::start().await;
    ses.set_mode(Mode::Stall(Duration::from_millis(1500)));
    let relay = RunningRelay::start(test_config(&ses.endpoint())).await;
    let (mut raw, _) = connect(relay.addr).await;
    raw.expect("EHLO client.test", "250").await;
    raw.expect("MAIL FROM:<a@goo.ne.jp>", "250").await;
    raw.expect("RCPT TO:<b@example.com>", "250").await;
    raw.expect("DATA", "354").await;
    raw.write(&format!("{BODY}.\r\n")).await;
    // In flight: the (stalling) fake has the request.
    wait_until_async(Duration::from_secs(10), || async {
        ok_if(ses.attempts() == 1, "SES has no request yet")
    })
    .await;
    relay.shutdown.trigger();
    // New connections are no longer accepted...
    wait_until_async(Duration::from_secs(2), || async {
        ok_if(
            TcpStream::connect(relay.addr).await.is_err(),
            "listener still open after shutdown",
        )
    })
    .await;
    // ...but the message in flight is delivered and answered.
    let reply = raw.reply().await;
    assert!(reply.starts_with("250 2.0.0"), "{reply}");
    assert!(raw.reply().await.starts_with("421 4.3.0"));
    assert!(
        relay.stop().await,
        "all sessions ended within shutdown-grace"
    );
    assert_eq!(ses.requests().len(), 1);
}

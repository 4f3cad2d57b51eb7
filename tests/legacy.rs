//! The legacy route end to end in one process (the SES fake, an in-process
//! SMTP sink as the legacy relay): its replies passed back as they are, an
//! outage as 451, STARTTLS (required with a CA file, a wrong CA,
//! opportunistic, not offered) and AUTH toward it.

mod common;

use common::client::SmtpClient;
use common::cutover::{cutover_config, transaction};
use common::ses_fake::SesFake;
use common::smtp_sink::SmtpSink;
use common::{RunningRelay, TempDir};
use ses_relay::config::LegacyTls;

/// MAIL is accepted locally, the first RCPT gets `expected` (the legacy route could not open), then QUIT.
async fn rcpt_refused(relay: &RunningRelay, expected: &str) {
    let mut smtp = SmtpClient::ready(relay.addr).await;
    smtp.write("MAIL FROM:<a@goo.ne.jp>\r\nRCPT TO:<b@example.net>\r\n")
        .await;
    assert!(smtp.reply().await.starts_with("250"));
    let reply = smtp.reply().await;
    assert!(reply.starts_with(expected), "expected {expected}: {reply}");
    smtp.write("QUIT\r\n").await;
    assert!(smtp.reply().await.starts_with("221"));
}

#[tokio::test]
async fn legacy_replies_pass_through_and_an_outage_is_451() {
    let ses = SesFake::start().await;
    let sink = SmtpSink::start().await;
    let dir = TempDir::new("passthrough");
    let relay = RunningRelay::start(cutover_config(&ses, sink.addr, &dir, 0.0)).await;
    let mut smtp = SmtpClient::ready(relay.addr).await;
    smtp.write("MAIL FROM:<a@goo.ne.jp>\r\n").await;
    assert!(smtp.reply().await.starts_with("250 2.1.0"));
    smtp.write("RCPT TO:<reject-me@example.net>\r\n").await;
    let refused = smtp.reply().await;
    assert!(
        refused.starts_with("550 5.1.1 <reject-me@example.net>: Recipient address rejected"),
        "{refused}"
    );
    smtp.write("RCPT TO:<defer-me@example.net>\r\n").await;
    assert!(smtp.reply().await.starts_with("450 4.2.0"));
    smtp.write("RCPT TO:<ok@example.net>\r\nDATA\r\n").await;
    assert!(smtp.reply().await.starts_with("250 2.1.5"));
    assert!(smtp.reply().await.starts_with("354"));
    smtp.write("From: a@goo.ne.jp\r\nSubject: legacy\r\n\r\n..dot line\r\n.\r\n")
        .await;
    let done = smtp.reply().await;
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
    let refusing = common::RefusingPort::bind();
    let closed = refusing.addr;
    let dir = TempDir::new("outage");
    let relay = RunningRelay::start(cutover_config(&ses, closed, &dir, 0.0)).await;
    rcpt_refused(&relay, "451 4.4.1").await;
    assert!(relay.stop().await);
}

async fn one_legacy_message(relay: &RunningRelay) -> String {
    let mut smtp = SmtpClient::ready(relay.addr).await;
    transaction(&mut smtp, "a@goo.ne.jp", "b@example.net", "tls@test").await
}

#[tokio::test]
async fn starttls_and_auth_toward_the_legacy_relay() {
    use common::TestCa;
    use common::smtp_sink::Features;
    let ses = SesFake::start().await;
    let ca = TestCa::new();
    let acceptor = ses_relay::connection::tls::acceptor(&ca.tls_config()).unwrap();
    let sink = SmtpSink::start_with(Features {
        tls: Some(acceptor.clone()),
        auth: Some(("relay-user".into(), "pa55".into())),
        ..Features::default()
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

#[tokio::test]
async fn mail_parameters_reach_the_legacy_relay_as_far_as_it_offers_them() {
    let ses = SesFake::start().await;
    // The sink offers SIZE and 8BITMIME, not SMTPUTF8.
    let sink = SmtpSink::start().await;
    let dir = TempDir::new("mail-parameters");
    let relay = RunningRelay::start(cutover_config(&ses, sink.addr, &dir, 0.0)).await;
    let mut smtp = SmtpClient::ready(relay.addr).await;
    for (mail, expected) in [
        (
            "MAIL FROM:<a@goo.ne.jp> SIZE=2000 BODY=8BITMIME SMTPUTF8",
            "SIZE=2000 BODY=8BITMIME",
        ),
        ("MAIL FROM:<a@goo.ne.jp>", ""),
    ] {
        let replies = smtp
            .pipeline(&[mail, "RCPT TO:<ok@example.net>", "DATA"])
            .await;
        assert_eq!(replies.len(), 3, "{replies:?}");
        let done = smtp
            .data_message("From: <a@goo.ne.jp>\r\nSubject: parameters\r\n\r\nbody\r\n")
            .await;
        assert!(done.starts_with("250"), "{done}");
        let got = sink.messages().pop().unwrap();
        assert_eq!(got.mail_parameters, expected, "{mail}");
    }
    assert!(relay.stop().await);

    // A relay that does not offer 8BITMIME is not told BODY=8BITMIME.
    let plain = SmtpSink::start_with(common::smtp_sink::Features {
        without_8bitmime: true,
        ..Default::default()
    })
    .await;
    let dir = TempDir::new("mail-parameters-7bit");
    let relay = RunningRelay::start(cutover_config(&ses, plain.addr, &dir, 0.0)).await;
    let mut smtp = SmtpClient::ready(relay.addr).await;
    let mail = "MAIL FROM:<a@goo.ne.jp> BODY=8BITMIME";
    let replies = smtp
        .pipeline(&[mail, "RCPT TO:<ok@example.net>", "DATA"])
        .await;
    assert_eq!(replies.len(), 3, "{replies:?}");
    let done = smtp
        .data_message("From: <a@goo.ne.jp>\r\nSubject: parameters\r\n\r\nbody\r\n")
        .await;
    assert!(done.starts_with("250"), "{done}");
    assert_eq!(plain.messages().pop().unwrap().mail_parameters, "");
    assert!(relay.stop().await);
}

#[tokio::test]
async fn data_after_the_legacy_relay_refused_every_recipient_is_554() {
    let ses = SesFake::start().await;
    let sink = SmtpSink::start().await;
    let dir = TempDir::new("no-valid-recipient");
    let relay = RunningRelay::start(cutover_config(&ses, sink.addr, &dir, 0.0)).await;
    let mut smtp = SmtpClient::ready(relay.addr).await;
    let replies = smtp
        .pipeline(&[
            "MAIL FROM:<a@goo.ne.jp>",
            "RCPT TO:<reject-me@example.net>",
            "DATA",
        ])
        .await;
    assert!(replies[1].starts_with("550 5.1.1"), "{replies:?}");
    assert!(replies[2].starts_with("554 5.5.1"), "{replies:?}");
    assert!(smtp.command("QUIT").await.starts_with("221"));
    assert!(sink.messages().is_empty());
    assert!(relay.stop().await);
}

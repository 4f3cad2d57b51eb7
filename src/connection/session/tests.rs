//! Session tests over an in-memory stream: every reply code the session
//! produces, driven the way a client would.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt, DuplexStream};

use super::{Session, SessionContext};
use crate::config::{ByteSize, DkimConfig, HumanDuration, SmtpConfig};
use crate::control::cutover::Cutover;
use crate::daemon::state::Reloadable;
use crate::message::envelope::Envelope;
use crate::message::forward::{Accepted, BoxFuture, Deliver, UpstreamError, Upstreams};
use crate::message::prepare::Preparer;
use crate::message::prepare::dkim::DkimKeys;
use crate::message::route::{Percent, Router, Share};

/// Records what it is given and answers as told.
struct Upstream {
    delivered: Mutex<Vec<(Envelope, Vec<u8>)>>,
    answer: Mutex<Result<Accepted, UpstreamError>>,
}

impl Upstream {
    fn new() -> Arc<Upstream> {
        Arc::new(Upstream {
            delivered: Mutex::new(Vec::new()),
            answer: Mutex::new(Ok(Accepted::queued("ses-0001".into()))),
        })
    }

    fn answer(&self, answer: Result<Accepted, UpstreamError>) {
        *self.answer.lock().unwrap() = answer;
    }

    fn count(&self) -> usize {
        self.delivered.lock().unwrap().len()
    }

    fn last(&self) -> (Envelope, String) {
        let all = self.delivered.lock().unwrap();
        let (env, msg) = all.last().expect("something delivered").clone();
        (env, String::from_utf8(msg).unwrap())
    }
}

impl Deliver for Upstream {
    fn deliver<'a>(
        &'a self,
        envelope: &'a Envelope,
        message: Vec<u8>,
    ) -> BoxFuture<'a, Result<Accepted, UpstreamError>> {
        self.delivered
            .lock()
            .unwrap()
            .push((envelope.clone(), message));
        let answer = self.answer.lock().unwrap().clone();
        Box::pin(async move { answer })
    }
}

fn smtp_config() -> SmtpConfig {
    SmtpConfig {
        hostname: "relay.test".into(),
        max_message_size: ByteSize(10_000),
        max_recipients: 50,
        ..SmtpConfig::default()
    }
}

/// Sessions around `upstream`: every transaction to SES, no cutover (a
/// fixed share), no DKIM key (signing is the preparer's tests' business).
fn context(smtp: SmtpConfig, upstream: Arc<Upstream>) -> Arc<SessionContext> {
    let router = Router::new(false, Vec::new(), Share::fixed(Percent::ALL));
    Arc::new(SessionContext::new(
        live(smtp),
        router,
        Upstreams::new(upstream, None),
    ))
}

fn live(smtp: SmtpConfig) -> Reloadable {
    Reloadable {
        preparer: Preparer::new(
            &smtp.hostname,
            DkimKeys::load(&DkimConfig::default()).unwrap(),
            "test-set",
            true,
        ),
        smtp,
        tls: None,
        rules: Vec::new(),
        admin_token: None,
        admin_read_token: None,
    }
}

/// The client end of a session.
struct TestSession {
    stream: DuplexStream,
    pending: Vec<u8>,
    task: tokio::task::JoinHandle<()>,
}

impl TestSession {
    async fn start(context: Arc<SessionContext>) -> TestSession {
        let (client, server) = tokio::io::duplex(1 << 20);
        let peer = "10.99.1.11:40000".parse().unwrap();
        let task = tokio::spawn(Session::new(context, Box::new(server), peer, false).run());
        let mut session = TestSession {
            stream: client,
            pending: Vec::new(),
            task,
        };
        session.expect("220").await;
        session
    }

    async fn send(&mut self, bytes: &str) {
        self.stream.write_all(bytes.as_bytes()).await.unwrap();
    }

    /// One whole reply (all its lines).
    async fn reply(&mut self) -> String {
        loop {
            if let Some(end) = reply_end(&self.pending) {
                let reply: Vec<u8> = self.pending.drain(..end).collect();
                return String::from_utf8(reply).unwrap();
            }
            let mut buf = [0u8; 4096];
            let n = tokio::time::timeout(Duration::from_secs(10), self.stream.read(&mut buf))
                .await
                .expect("reply within 10 s")
                .unwrap();
            assert!(
                n > 0,
                "connection closed; pending {:?}",
                String::from_utf8_lossy(&self.pending)
            );
            self.pending.extend_from_slice(&buf[..n]);
        }
    }

    async fn expect(&mut self, code: &str) -> String {
        let reply = self.reply().await;
        assert!(reply.starts_with(code), "expected {code}, got {reply:?}");
        reply
    }

    async fn cmd(&mut self, line: &str, code: &str) -> String {
        self.send(&format!("{line}\r\n")).await;
        self.expect(code).await
    }

    async fn ehlo(&mut self) -> String {
        self.cmd("EHLO client.test", "250").await
    }

    async fn mail_from(&mut self, from: &str, code: &str) -> String {
        self.cmd(&format!("MAIL FROM:<{from}>"), code).await
    }

    async fn rcpt_to(&mut self, to: &str, code: &str) -> String {
        self.cmd(&format!("RCPT TO:<{to}>"), code).await
    }

    async fn data(&mut self, message: &str, code: &str) -> String {
        self.cmd("DATA", "354").await;
        self.send(message).await;
        self.send(".\r\n").await;
        self.expect(code).await
    }

    /// Waits for the server to close the connection.
    async fn closed(mut self) {
        let mut rest = Vec::new();
        let read =
            tokio::time::timeout(Duration::from_secs(10), self.stream.read_to_end(&mut rest)).await;
        assert!(read.is_ok(), "connection not closed");
        assert!(
            rest.is_empty(),
            "unexpected {:?}",
            String::from_utf8_lossy(&rest)
        );
        self.task.await.unwrap();
    }
}

/// Length of the first complete reply in `buf` (last line has a space after the code).
fn reply_end(buf: &[u8]) -> Option<usize> {
    let mut start = 0;
    while let Some(lf) = buf[start..].iter().position(|&b| b == b'\n') {
        let line = &buf[start..start + lf + 1];
        start += lf + 1;
        if line.get(3) != Some(&b'-') {
            return Some(start);
        }
    }
    None
}

const MESSAGE: &str =
    "From: A <a@goo.ne.jp>\r\nTo: b@example.com\r\nSubject: test\r\n\r\nHello\r\n";

#[tokio::test]
async fn whole_transaction_is_answered_with_the_upstream_id() {
    let upstream = Upstream::new();
    let mut s = TestSession::start(context(smtp_config(), upstream.clone())).await;
    let ehlo = s.ehlo().await;
    for keyword in [
        "PIPELINING",
        "SIZE 10000",
        "8BITMIME",
        "SMTPUTF8",
        "ENHANCEDSTATUSCODES",
    ] {
        assert!(ehlo.contains(keyword), "{keyword} missing in {ehlo}");
    }
    assert!(!ehlo.contains("STARTTLS"), "no TLS configured: {ehlo}");
    s.mail_from("a@goo.ne.jp", "250 2.1.0").await;
    s.rcpt_to("b@example.com", "250 2.1.5").await;
    s.rcpt_to("bcc@example.org", "250 2.1.5").await;
    let reply = s
        .data(MESSAGE, "250 2.0.0 Ok: queued as ses-0001 [id ")
        .await;
    let (envelope, message) = upstream.last();
    assert!(reply.contains(&envelope.id));
    assert_eq!(envelope.rcpt_to, ["b@example.com", "bcc@example.org"]);
    assert!(
        message.contains(&format!("id {}", envelope.id)),
        "Received carries the id"
    );
    assert!(message.starts_with("X-SES-CONFIGURATION-SET: test-set\r\nReceived: from "));
    // The session is ready for the next transaction.
    s.mail_from("", "250").await;
    s.rcpt_to("b@example.com", "250").await;
    s.data(MESSAGE, "250").await;
    assert_eq!(upstream.last().0.mail.address, "", "null sender kept");
    s.cmd("QUIT", "221 2.0.0").await;
    s.closed().await;
}

#[tokio::test]
async fn pipelined_commands_get_their_replies_in_order() {
    let upstream = Upstream::new();
    let mut s = TestSession::start(context(smtp_config(), upstream.clone())).await;
    s.ehlo().await;
    s.send("MAIL FROM:<a@goo.ne.jp> BODY=8BITMIME\r\nRCPT TO:<b@example.com>\r\nRCPT TO:<c@example.com>\r\nDATA\r\n").await;
    s.expect("250 2.1.0").await;
    s.expect("250 2.1.5").await;
    s.expect("250 2.1.5").await;
    s.expect("354").await;
    s.send("From: a@goo.ne.jp\r\nSubject: 8bit \u{65e5}\u{672c}\r\n\r\n\u{672c}\u{6587}\r\n.\r\nRSET\r\nNOOP\r\n")
        .await;
    s.expect("250 2.0.0 Ok: queued").await;
    s.expect("250 2.0.0").await;
    s.expect("250 2.0.0").await;
    assert!(
        upstream.last().1.ends_with("\r\n\r\n\u{672c}\u{6587}\r\n"),
        "8-bit body passed as is"
    );
}

#[tokio::test]
async fn commands_out_of_sequence() {
    let upstream = Upstream::new();
    let mut s = TestSession::start(context(smtp_config(), upstream.clone())).await;
    s.mail_from("a@goo.ne.jp", "503 5.5.1").await;
    s.ehlo().await;
    s.rcpt_to("b@example.com", "503 5.5.1").await;
    s.cmd("DATA", "503 5.5.1").await;
    s.mail_from("a@goo.ne.jp", "250").await;
    s.mail_from("a@goo.ne.jp", "503 5.5.1").await;
    s.cmd("DATA", "554 5.5.1").await;
    s.cmd("RSET", "250 2.0.0").await;
    s.cmd("NOOP", "250 2.0.0").await;
    s.cmd("VRFY postmaster", "252 2.5.2").await;
    s.cmd("HELP", "214 2.0.0").await;
    s.cmd("STARTTLS", "502 5.5.1").await;
    s.cmd("BDAT 10 LAST", "502 5.5.1").await;
    s.cmd("HELO old.client", "250").await;
    assert_eq!(upstream.count(), 0);
}

#[tokio::test]
async fn bad_syntax_gets_5xx_and_too_many_errors_end_the_session() {
    let mut s = TestSession::start(context(smtp_config(), Upstream::new())).await;
    s.ehlo().await;
    s.cmd("FOO", "500 5.5.1").await;
    s.cmd("MAIL FROM:<no-at-sign>", "501 5.1.7").await;
    s.mail_from("a@goo.ne.jp", "250").await;
    s.cmd("RCPT TO:<>", "501 5.1.3").await;
    s.cmd("RCPT TO:<\u{5c71}\u{7530}@example.jp>", "553 5.6.7")
        .await;
    s.cmd(&format!("NOOP {}", "x".repeat(1000)), "500 5.5.2")
        .await;
    for _ in 0..5 {
        s.cmd("FOO", "500").await;
    }
    // The tenth error is answered, then the session ends.
    s.cmd("FOO", "500").await;
    s.expect("421 4.7.0").await;
    s.closed().await;
}

#[tokio::test]
async fn recipient_limit_gives_452_and_keeps_the_first_fifty() {
    let upstream = Upstream::new();
    let mut s = TestSession::start(context(smtp_config(), upstream.clone())).await;
    s.ehlo().await;
    s.mail_from("a@goo.ne.jp", "250").await;
    for i in 0..50 {
        s.rcpt_to(&format!("r{i}@example.com"), "250").await;
    }
    s.rcpt_to("r50@example.com", "452 4.5.3").await;
    s.data(MESSAGE, "250").await;
    assert_eq!(upstream.last().0.rcpt_to.len(), 50);
}

#[tokio::test]
async fn oversize_is_refused_in_mail_and_after_data() {
    let upstream = Upstream::new();
    let mut s = TestSession::start(context(smtp_config(), upstream.clone())).await;
    s.ehlo().await;
    s.cmd("MAIL FROM:<a@goo.ne.jp> SIZE=10001", "552 5.3.4")
        .await;
    // Exactly the limit is allowed (RFC 1870: the maximum it will accept).
    s.cmd("MAIL FROM:<a@goo.ne.jp> SIZE=10000", "250").await;
    s.cmd("RSET", "250").await;
    s.mail_from("a@goo.ne.jp", "250").await;
    s.rcpt_to("b@example.com", "250").await;
    let big = format!(
        "Subject: big\r\n\r\n{}",
        "0123456789012345678901234567890123456789\r\n".repeat(300)
    );
    s.data(&big, "552 5.3.4").await;
    assert_eq!(upstream.count(), 0);
    // The session goes on.
    s.mail_from("a@goo.ne.jp", "250").await;
}

#[tokio::test]
async fn bare_line_endings_are_refused() {
    let upstream = Upstream::new();
    let mut s = TestSession::start(context(smtp_config(), upstream.clone())).await;
    s.ehlo().await;
    s.mail_from("a@goo.ne.jp", "250").await;
    s.rcpt_to("b@example.com", "250").await;
    // A smuggling attempt: "\n.\n" must neither end DATA nor start a new command.
    s.data(
        "Subject: x\r\n\r\nhi\n.\nMAIL FROM:<evil@example.com>\r\n",
        "550 5.5.2",
    )
    .await;
    assert_eq!(upstream.count(), 0);
}

#[tokio::test]
async fn upstream_verdicts_become_451_and_554() {
    let upstream = Upstream::new();
    let mut s = TestSession::start(context(smtp_config(), upstream.clone())).await;
    s.ehlo().await;
    upstream.answer(Err(UpstreamError::ses(
        "Throttling",
        "Maximum sending rate exceeded.",
    )));
    s.mail_from("a@goo.ne.jp", "250").await;
    s.rcpt_to("b@example.com", "250").await;
    let reply = s
        .data(
            MESSAGE,
            "451 4.4.5 Maximum sending rate exceeded. (Throttling) [id ",
        )
        .await;
    assert!(reply.contains(&upstream.last().0.id));
    upstream.answer(Err(UpstreamError::ses(
        "MessageRejected",
        "Email address is not verified.",
    )));
    s.mail_from("a@goo.ne.jp", "250").await;
    s.rcpt_to("b@example.com", "250").await;
    s.data(MESSAGE, "554 5.7.1 Email address is not verified.")
        .await;
}

#[tokio::test]
async fn require_tls_refuses_mail_on_plaintext() {
    let smtp = SmtpConfig {
        require_tls: true,
        ..smtp_config()
    };
    let mut s = TestSession::start(context(smtp, Upstream::new())).await;
    s.ehlo().await;
    s.mail_from("a@goo.ne.jp", "530 5.7.0").await;
}

#[tokio::test(start_paused = true)]
async fn idle_client_gets_421_and_is_closed() {
    let smtp = SmtpConfig {
        idle_timeout: HumanDuration(Duration::from_secs(300)),
        ..smtp_config()
    };
    let mut s = TestSession::start(context(smtp, Upstream::new())).await;
    s.ehlo().await;
    tokio::time::sleep(Duration::from_secs(301)).await;
    s.expect("421 4.4.2").await;
    s.closed().await;
}

#[tokio::test]
async fn shutdown_closes_idle_sessions_and_lets_a_transaction_finish() {
    let upstream = Upstream::new();
    let relay = context(smtp_config(), upstream.clone());
    let mut idle = TestSession::start(relay.clone()).await;
    idle.ehlo().await;
    let mut busy = TestSession::start(relay.clone()).await;
    busy.ehlo().await;
    busy.mail_from("a@goo.ne.jp", "250").await;
    relay.shutdown.trigger();
    idle.expect("421 4.3.0").await;
    idle.closed().await;
    // The transaction in flight completes, then the session is told to go.
    busy.rcpt_to("b@example.com", "250").await;
    busy.data(MESSAGE, "250").await;
    busy.expect("421 4.3.0").await;
    busy.closed().await;
    assert_eq!(upstream.count(), 1);
}

mod hardening;
mod outcomes;
mod routes;

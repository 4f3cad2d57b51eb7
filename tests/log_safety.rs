//! Terminal escapes stay out of the text log: ESC, BEL, BS, CR, LF, DEL, a
//! C1 CSI and an OSC sequence (`ESC ] 0;title BEL`, which retitles a
//! terminal) sent in every field an outsider reaches: EHLO, MAIL FROM and
//! RCPT TO, `X-SES-MESSAGE-TAGS`, the PROXY header (from a trusted balancer
//! and from a peer that is not one) and `PUT /cutover`'s reason. The relay
//! runs as its own process with stderr in a file, as journald or a terminal
//! would take it, with addresses masked and unmasked; the file must hold no
//! control byte but the LF ending each line.

mod common;

use std::net::SocketAddr;
use std::time::Duration;

use common::TempDir;
use common::client::{SmtpClient, connect_from};
use common::relay_process::{RelayProcess, config_file};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Trusted balancer; 127.0.0.1 plays a host that is not one.
const BALANCER: &str = "127.0.0.2";

/// An OSC retitle, a screen clear, BS, DEL and C1 CSI: no CR or LF (those
/// would end an SMTP command line).
const ESCAPES: &str = "\x1b]0;pwned\x07\x1b[2J\x08\x7f\u{9b}31m";

/// Writes `bytes`, then reads until the relay closes or goes quiet.
async fn send_and_drain(stream: &mut TcpStream, bytes: &[u8]) -> String {
    let _ = stream.write_all(bytes).await;
    let mut out = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(10), stream.read_to_end(&mut out)).await;
    String::from_utf8_lossy(&out).into_owned()
}

/// A session through the balancer with hostile EHLO, addresses and tags.
async fn hostile_session(relay: SocketAddr) {
    let mut client = SmtpClient::over(connect_from(BALANCER, relay).await);
    client
        .write(b"PROXY TCP4 202.217.1.2 10.0.0.1 40000 25\r\n")
        .await;
    assert!(client.reply().await.starts_with("220"));
    let commands = [
        format!("EHLO {ESCAPES}.example\rX"),
        format!("EHLO a{ESCAPES}"),
        "EHLO postfix.test".to_string(),
        format!("MAIL FROM:<{ESCAPES}@goo.ne.jp>"),
        format!("MAIL FROM:<\"{ESCAPES}\"@goo.ne.jp>"),
        format!("MAIL FROM:<x@{ESCAPES}.jp>"),
        "RSET".to_string(),
        "MAIL FROM:<\"\x1b]0;q\x07\"@goo.ne.jp>".to_string(),
        format!("RCPT TO:<{ESCAPES}@example.com>"),
        format!("RCPT TO:<\"{ESCAPES}\"@example.com>"),
        "RCPT TO:<b@example.com>".to_string(),
    ];
    for command in commands {
        client.command(&command).await;
    }
    // Whatever MAIL got, a clean transaction carries the hostile tags.
    for command in [
        "RSET",
        "MAIL FROM:<a@goo.ne.jp>",
        "RCPT TO:<b@example.com>",
        "DATA",
    ] {
        client.command(command).await;
    }
    let message = format!(
        "From: a@goo.ne.jp\r\nTo: b@example.com\r\nSubject: t\r\n\
         X-SES-MESSAGE-TAGS: campaign={ESCAPES}, {ESCAPES}=x, ok=\x1b]0;t\x07\r\n\
         \r\nbody\r\n.\r\n"
    );
    client.write(message).await;
    let answer = client.reply().await;
    assert!(answer.starts_with("250"), "{answer}");
    client.command("QUIT").await;
}

/// PROXY headers with escapes, CR and LF where the addresses go.
fn hostile_headers() -> Vec<Vec<u8>> {
    vec![
        format!("PROXY TCP4 {ESCAPES} 10.0.0.1 1 25\r\n").into_bytes(),
        format!("PROXY TCP4 1.2.3.4\r{ESCAPES}\n").into_bytes(),
        format!("PROXY {ESCAPES}\n\r\n").into_bytes(),
        format!("{ESCAPES}\r\n").into_bytes(),
        // The v2 signature, then a version byte and addresses of escapes.
        [
            &b"\r\n\r\n\0\r\nQUIT\n\x21\x11\x00\x0c"[..],
            b"\x1b]0;\x07\x08\r\n\x7f\xc2\x9b\x1b[",
        ]
        .concat(),
        [&b"\r\n\r\n\0\r\nQUIT\n\x1b\x07\x00\x02"[..], b"\r\n"].concat(),
    ]
}

async fn put_cutover_reason(admin: SocketAddr, reason: &str) -> String {
    let body = serde_json::json!({"ses_percent": 50, "reason": reason}).to_string();
    let mut stream = TcpStream::connect(admin).await.unwrap();
    let request = format!(
        "PUT /cutover HTTP/1.1\r\nHost: relay\r\nAuthorization: Bearer test-token\r\n\
         Content-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    send_and_drain(&mut stream, request.as_bytes()).await
}

/// Every byte of the file that is a control character other than LF:
/// C0, DEL, and C1 as UTF-8 encodes it (C2 80 to C2 9F).
fn raw_controls(log: &[u8]) -> Vec<(usize, u8)> {
    let mut found = Vec::new();
    for (i, byte) in log.iter().enumerate() {
        let c1 = *byte == 0xc2 && log.get(i + 1).is_some_and(|b| (0x80..=0x9f).contains(b));
        if (*byte < 0x20 && *byte != b'\n') || *byte == 0x7f || c1 {
            found.push((i, *byte));
        }
    }
    found
}

async fn hostile_input_reaches_the_log_escaped(mask_pii: bool) {
    let dir = TempDir::new("log-safety");
    let config = config_file(
        &dir,
        &format!(
            "proxy-protocol = true\nproxy-trusted = [\"{BALANCER}/32\"]\n\
             allowed-clients = [\"202.217.0.0/16\"]"
        ),
        &format!(
            "[log]\nformat = \"text\"\nlevel = \"info,ses_relay=debug\"\nmask-pii = {mask_pii}\n"
        ),
    );
    let relay = RelayProcess::start(&dir, &config);

    hostile_session(relay.smtp).await;
    for header in hostile_headers() {
        let mut trusted = connect_from(BALANCER, relay.smtp).await;
        send_and_drain(&mut trusted, &header).await;
        let mut untrusted = connect_from("127.0.0.1", relay.smtp).await;
        let refused = send_and_drain(&mut untrusted, &header).await;
        assert!(refused.starts_with("554 5.7.1"), "{refused}");
    }
    let answer = put_cutover_reason(
        relay.admin.unwrap(),
        &format!("week 2 {ESCAPES}\r\nINFO forged line\x1b]0;t\x07"),
    )
    .await;
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");

    let log = relay.wait_for_log("the session, the headers and the cutover", |log| {
        log.contains("audit=\"cutover\"")
            && log.contains("X-SES-MESSAGE-TAGS tag not sent")
            && log.matches("peer not in proxy-trusted").count() >= hostile_headers().len()
    });
    let bytes = std::fs::read(&relay.log).unwrap();
    let raw = raw_controls(&bytes);
    assert!(raw.is_empty(), "raw control bytes {raw:?} in:\n{log:?}");
    // What was sent is there, escaped (so this test sees the fields it aims at).
    let tags = r"\x1b]0;pwned\x07\x1b[2J\x08\x7f\u{9b}31m";
    assert!(log.contains(tags), "no {tags} in:\n{log}");
    let audit = log
        .lines()
        .find(|l| l.contains("audit=\"cutover\""))
        .unwrap();
    assert!(
        audit.contains("week 2 ") && audit.contains("forged line"),
        "{audit}"
    );
    assert!(log.contains("invalid PROXY header"), "{log}");
    // Every line is a log line of its own: nothing forged a line start.
    for line in log.lines() {
        assert!(line.starts_with("20") && line.contains('Z'), "{line:?}");
    }
}

#[tokio::test]
async fn no_control_byte_reaches_the_text_log_with_addresses_masked() {
    hostile_input_reaches_the_log_escaped(true).await;
}

#[tokio::test]
async fn no_control_byte_reaches_the_text_log_with_addresses_unmasked() {
    hostile_input_reaches_the_log_escaped(false).await;
}

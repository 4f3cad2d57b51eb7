//! Behind a load balancer: the PROXY protocol (v1 and v2) from a trusted
//! peer, its client checked against `allowed-clients` and named in
//! `Received:`; peers outside `proxy-trusted`, and trusted peers without a
//! header, get no session. The balancer is 127.0.0.2 (Linux answers all of
//! 127.0.0.0/8 on loopback); 127.0.0.1 plays a host that is not trusted.

mod common;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use common::client::{SmtpClient, connect_from, smtp};
use common::metrics::Metrics;
use common::ses_fake::SesFake;
use common::{RunningRelay, test_config};
use ses_relay::config::Config;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Trusted balancer address.
const BALANCER: &str = "127.0.0.2";

fn proxy_config(ses: &SesFake) -> Config {
    let mut config = test_config(&ses.endpoint());
    config.smtp.proxy_protocol = true;
    config.smtp.proxy_trusted = vec![format!("{BALANCER}/32").parse().unwrap()];
    // The Postfix fleet; neither loopback address is a client by itself.
    config.smtp.allowed_clients = vec![
        "202.217.0.0/16".parse().unwrap(),
        "2001:db8:25::/48".parse().unwrap(),
    ];
    config
}

fn v2_header(client: SocketAddr, local: bool) -> Vec<u8> {
    let mut out = b"\r\n\r\n\0\r\nQUIT\n".to_vec();
    if local {
        out.extend_from_slice(&[0x20, 0x00, 0, 0]);
        return out;
    }
    let (family, mut addresses) = match client {
        SocketAddr::V4(a) => (0x11, [a.ip().octets().to_vec(), vec![10, 0, 0, 2]].concat()),
        SocketAddr::V6(a) => (
            0x21,
            [a.ip().octets().to_vec(), [0u8; 15].to_vec(), vec![1]].concat(),
        ),
    };
    addresses.extend_from_slice(&client.port().to_be_bytes());
    addresses.extend_from_slice(&25u16.to_be_bytes());
    out.extend_from_slice(&[0x21, family]);
    out.extend_from_slice(&(addresses.len() as u16).to_be_bytes());
    out.extend_from_slice(&addresses);
    out
}

/// Sends `header` and, in the same write, the client's first command (a
/// client that does not wait for the greeting): both must be read exactly.
async fn deliver(relay: SocketAddr, header: &[u8], tag: &str) -> Vec<String> {
    let mut client = SmtpClient::over(connect_from(BALANCER, relay).await);
    let mut first = header.to_vec();
    first.extend_from_slice(b"EHLO postfix.test\r\n");
    client.write(first).await;
    let mut replies = vec![client.reply().await];
    if !replies[0].starts_with("220") {
        return replies;
    }
    replies.push(client.reply().await);
    for command in [
        "MAIL FROM:<news@goo.ne.jp>",
        "RCPT TO:<user@example.com>",
        "DATA",
    ] {
        replies.push(client.command(command).await);
    }
    let message = format!(
        "From: news@goo.ne.jp\r\nTo: user@example.com\r\nSubject: {tag}\r\n\r\nbehind the balancer\r\n.\r\nQUIT\r\n"
    );
    client.write(message).await;
    replies.push(client.reply().await);
    replies
}

fn received_of(ses: &SesFake, tag: &str) -> String {
    let request = ses
        .requests()
        .into_iter()
        .find(|r| String::from_utf8_lossy(&r.raw).contains(&format!("Subject: {tag}")))
        .unwrap_or_else(|| panic!("{tag} reached SES"));
    let raw = String::from_utf8_lossy(&request.raw).to_string();
    raw.split("\r\n")
        .skip_while(|l| !l.starts_with("Received:"))
        .take_while(|l| l.starts_with("Received:") || l.starts_with('\t'))
        .collect::<Vec<_>>()
        .join(" ")
}

#[tokio::test]
async fn v1_and_v2_from_the_balancer_name_the_client_for_allowed_clients_and_received() {
    let ses = SesFake::start().await;
    let relay = RunningRelay::start(proxy_config(&ses)).await;
    let before = Metrics::of(&relay).await;
    let allowed: [(&str, Vec<u8>, &str); 3] = [
        (
            "v1",
            b"PROXY TCP4 202.217.1.2 10.0.0.2 40000 25\r\n".to_vec(),
            "[202.217.1.2]",
        ),
        (
            "v2",
            v2_header("202.217.9.8:40001".parse().unwrap(), false),
            "[202.217.9.8]",
        ),
        (
            "v2-ipv6",
            v2_header("[2001:db8:25::7]:40002".parse().unwrap(), false),
            "[IPv6:2001:db8:25::7]",
        ),
    ];
    for (tag, header, in_received) in allowed {
        let replies = deliver(relay.addr, &header, tag).await;
        assert!(replies[0].starts_with("220 "), "{tag}: {replies:?}");
        assert!(
            replies[1].starts_with("250"),
            "{tag}: EHLO sent with the header is answered: {replies:?}"
        );
        assert!(
            replies.last().unwrap().starts_with("250 "),
            "{tag}: {replies:?}"
        );
        let received = received_of(&ses, tag);
        assert!(received.contains(in_received), "{tag}: {received}");
        assert!(
            !received.contains("127.0.0.2"),
            "{tag}: the balancer is not the client: {received}"
        );
    }
    // Clients outside allowed-clients, named by either version: refused as without a balancer.
    for header in [
        b"PROXY TCP4 10.9.9.9 10.0.0.2 40000 25\r\n".to_vec(),
        v2_header("10.9.9.9:40000".parse().unwrap(), false),
        // LOCAL (the balancer's own health check): the client is the balancer, not allowed here.
        v2_header("0.0.0.0:0".parse().unwrap(), true),
    ] {
        let replies = deliver(relay.addr, &header, "denied").await;
        assert_eq!(replies.len(), 1, "{replies:?}");
        assert!(replies[0].starts_with("554 5.7.1 "), "{replies:?}");
    }
    let after = Metrics::of(&relay).await;
    let denied = [("result", "denied")];
    assert!(
        after.delta(&before, "ses_relay_smtp_connections_total", &denied) >= 3.0,
        "{}",
        after.text()
    );
    relay.stop().await;
}

#[tokio::test]
async fn peer_outside_proxy_trusted_is_refused_even_if_allowed() {
    let ses = SesFake::start().await;
    let mut config = proxy_config(&ses);
    config
        .smtp
        .allowed_clients
        .push("127.0.0.1/32".parse().unwrap());
    let relay = RunningRelay::start(config).await;
    let mut client = SmtpClient::over(connect_from("127.0.0.1", relay.addr).await);
    // Even with a well-formed header that names an allowed client.
    client
        .write(b"PROXY TCP4 202.217.1.2 10.0.0.2 40000 25\r\n")
        .await;
    let first = client.reply().await;
    assert!(first.starts_with("554 5.7.1 "), "{first}");
    assert!(
        client.try_reply().await.is_none(),
        "closed after the refusal"
    );
    relay.stop().await;
}

/// Reads until the relay closes; returns what it sent and how long that took.
async fn until_closed(mut stream: TcpStream) -> (Vec<u8>, Duration) {
    let started = Instant::now();
    let mut got = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(15), stream.read_to_end(&mut got)).await;
    (got, started.elapsed())
}

#[tokio::test]
async fn trusted_peer_without_a_header_is_closed_without_a_greeting() {
    let ses = SesFake::start().await;
    let relay = RunningRelay::start(proxy_config(&ses)).await;
    let before = Metrics::of(&relay).await;
    // A client speaking SMTP at once (no header): closed at once, nothing written.
    let mut stream = connect_from(BALANCER, relay.addr).await;
    stream.write_all(b"EHLO postfix.test\r\n").await.unwrap();
    let (got, took) = until_closed(stream).await;
    assert!(got.is_empty(), "{:?}", String::from_utf8_lossy(&got));
    assert!(took < Duration::from_secs(3), "{took:?}");
    // Silence: closed after the header timeout, still without a greeting.
    let stream = connect_from(BALANCER, relay.addr).await;
    let (got, took) = until_closed(stream).await;
    assert!(got.is_empty(), "{:?}", String::from_utf8_lossy(&got));
    assert!(
        took >= ses_relay::connection::proxy::HEADER_TIMEOUT - Duration::from_millis(100)
            && took < ses_relay::connection::proxy::HEADER_TIMEOUT + Duration::from_secs(5),
        "{took:?}"
    );
    let after = Metrics::of(&relay).await;
    for result in ["proxy_header_missing", "proxy_header_invalid"] {
        let labels = [("result", result)];
        assert!(
            after.delta(&before, "ses_relay_smtp_connections_total", &labels) >= 1.0,
            "{result}:\n{}",
            after.text()
        );
    }
    relay.stop().await;
}

#[tokio::test]
async fn proxy_protocol_off_ignores_proxy_trusted() {
    // Default off: a connection from loopback is a client as before, no header expected.
    let ses = SesFake::start().await;
    let relay = RunningRelay::start(test_config(&ses.endpoint())).await;
    let replies = smtp(relay.addr, &["EHLO postfix.test".to_string()], None).await;
    assert!(replies[0].starts_with("220 "), "{replies:?}");
    relay.stop().await;
}

//! A real SMTP client (mail-send) toward the relay under test: one message
//! and its final reply, the code of a refusal, and a small test message.

use std::time::Duration;

use mail_send::SmtpClientBuilder;
use mail_send::smtp::message::Message;

use super::RunningRelay;

/// A small message from goo.ne.jp with a Message-ID and a Date.
pub const BODY: &str = "From: Goo <news@goo.ne.jp>\r\nTo: b@example.com\r\nSubject: hello\r\nMessage-ID: <1@goo.ne.jp>\r\nDate: Sun, 22 Nov 2026 08:00:00 +0900\r\n\r\nHello from the relay test.\r\n";

/// Sends one message over plain SMTP; the final reply as `code x.y.z text`.
pub async fn send(
    relay: &RunningRelay,
    from: &str,
    to: &[&str],
    body: &str,
) -> Result<String, mail_send::Error> {
    let mut client = SmtpClientBuilder::new("127.0.0.1".to_string(), relay.addr.port())
        .unwrap()
        .helo_host("client.test")
        .timeout(Duration::from_secs(30))
        .connect_plain()
        .await?;
    let response = client
        .send(Message::new(from, to.iter().copied(), body.as_bytes()))
        .await?;
    let _ = client.quit().await;
    Ok(format!(
        "{} {}.{}.{} {}",
        response.code, response.esc[0], response.esc[1], response.esc[2], response.message
    ))
}

/// The code, enhanced code and text of an SMTP refusal.
pub fn refused_code(err: mail_send::Error) -> (u16, [u8; 3], String) {
    match err {
        mail_send::Error::UnexpectedReply(r) => (r.code, r.esc, r.message),
        other => panic!("expected an SMTP refusal, got {other}"),
    }
}

/// A connection to `relay` from `source` (any of 127.0.0.0/8 on Linux
/// loopback), to play a balancer or a host that is not one.
pub async fn connect_from(source: &str, relay: std::net::SocketAddr) -> tokio::net::TcpStream {
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.bind(format!("{source}:0").parse().unwrap()).unwrap();
    socket.connect(relay).await.unwrap()
}

/// One SMTP reply, every line of it (empty when the relay closed).
pub async fn reply(read: &mut tokio::io::BufReader<tokio::net::TcpStream>) -> String {
    use tokio::io::AsyncBufReadExt;
    let mut all = String::new();
    loop {
        let mut line = String::new();
        let n = tokio::time::timeout(Duration::from_secs(10), read.read_line(&mut line))
            .await
            .expect("reply in time")
            .unwrap();
        all.push_str(&line);
        if n == 0 || line.as_bytes().get(3) != Some(&b'-') {
            return all;
        }
    }
}

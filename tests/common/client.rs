//! The tests' SMTP client toward the relay (or a peer): [`SmtpClient`], raw
//! enough to send what a polite client never would (bytes that are not
//! UTF-8, a PROXY header before the greeting, a whole transaction in one
//! write), with steps for EHLO, MAIL, RCPT and DATA and pipelining. Also a
//! real client library (mail-send), for the polite client's view: one
//! message and its final reply, the code of a refusal, a small test message.

use std::future::Future;
use std::net::SocketAddr;
use std::time::Duration;

use mail_send::SmtpClientBuilder;
use mail_send::smtp::message::Message;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpSocket, TcpStream};

use super::RunningRelay;

/// How long one reply may take: past it the test fails, never hangs.
const REPLY_WITHIN: Duration = Duration::from_secs(30);

/// One SMTP connection, read a whole reply at a time.
pub struct SmtpClient {
    stream: BufReader<TcpStream>,
}

impl SmtpClient {
    /// Connects; the greeting is the first [`SmtpClient::reply`].
    pub async fn connect(addr: SocketAddr) -> SmtpClient {
        SmtpClient::over(TcpStream::connect(addr).await.unwrap())
    }

    /// A client on a stream already open (from [`connect_from`]).
    pub fn over(stream: TcpStream) -> SmtpClient {
        SmtpClient {
            stream: BufReader::new(stream),
        }
    }

    /// Connects and reads the greeting, which must be 220.
    pub async fn greeted(addr: SocketAddr) -> SmtpClient {
        let mut client = SmtpClient::connect(addr).await;
        let greeting = client.reply().await;
        assert!(greeting.starts_with("220"), "greeting: {greeting:?}");
        client
    }

    /// Greeted and past `EHLO client.test`: ready for a transaction.
    pub async fn ready(addr: SocketAddr) -> SmtpClient {
        let mut client = SmtpClient::greeted(addr).await;
        client.ehlo("client.test").await;
        client
    }

    /// The connection itself, for a test that writes or shuts it down itself.
    pub fn stream(&mut self) -> &mut TcpStream {
        self.stream.get_mut()
    }

    /// Writes `bytes` as they are.
    pub async fn write(&mut self, bytes: impl AsRef<[u8]>) {
        self.stream().write_all(bytes.as_ref()).await.unwrap();
    }

    /// One whole reply, every line of it, as bytes (the relay may echo
    /// bytes that are not UTF-8); None when the connection closed (or
    /// failed) before any byte of it.
    pub async fn reply_bytes(&mut self) -> Option<Vec<u8>> {
        let mut all = Vec::new();
        loop {
            let mut line = Vec::new();
            let read = tokio::time::timeout(REPLY_WITHIN, self.stream.read_until(b'\n', &mut line))
                .await
                .unwrap_or_else(|_| panic!("no reply within {REPLY_WITHIN:?}"));
            all.extend_from_slice(&line);
            if matches!(read, Ok(0) | Err(_)) {
                return (!all.is_empty()).then_some(all);
            }
            if line.get(3) != Some(&b'-') {
                return Some(all);
            }
        }
    }

    /// [`SmtpClient::reply_bytes`] as text; None when closed first.
    pub async fn try_reply(&mut self) -> Option<String> {
        let reply = self.reply_bytes().await?;
        Some(String::from_utf8_lossy(&reply).into_owned())
    }

    /// One whole reply, every line of it; empty when the connection closed.
    pub async fn reply(&mut self) -> String {
        self.try_reply().await.unwrap_or_default()
    }

    /// Up to `count` replies, fewer when the connection closes first.
    pub async fn replies(&mut self, count: usize) -> Vec<String> {
        let mut replies = Vec::new();
        while replies.len() < count {
            match self.try_reply().await {
                Some(reply) => replies.push(reply),
                None => break,
            }
        }
        replies
    }

    /// Sends `line` (CRLF added) and reads its reply.
    pub async fn command(&mut self, line: &str) -> String {
        self.write(format!("{line}\r\n")).await;
        self.reply().await
    }

    /// [`SmtpClient::command`], the reply asserted to start with `code`.
    pub async fn expect(&mut self, line: &str, code: &str) -> String {
        let reply = self.command(line).await;
        assert!(
            reply.starts_with(code),
            "{line}: expected {code}, got {reply:?}"
        );
        reply
    }

    /// `EHLO name`, which must be accepted; the capabilities.
    pub async fn ehlo(&mut self, name: &str) -> String {
        self.expect(&format!("EHLO {name}"), "250").await
    }

    /// Every command (CRLF added) in one write, as a pipelining client
    /// sends them (RFC 2920); one reply each.
    pub async fn pipeline(&mut self, commands: &[&str]) -> Vec<String> {
        let wire: String = commands.iter().map(|c| format!("{c}\r\n")).collect();
        self.write(wire).await;
        self.replies(commands.len()).await
    }

    /// `message` after a 354, as it is (the test controls every byte, dot
    /// stuffing included), CRLF added if it lacks one, then the end marker;
    /// the final reply.
    pub async fn data_message(&mut self, message: impl AsRef<[u8]>) -> String {
        let message = message.as_ref();
        let mut wire = message.to_vec();
        if !message.ends_with(b"\r\n") {
            wire.extend_from_slice(b"\r\n");
        }
        wire.extend_from_slice(b".\r\n");
        self.write(wire).await;
        self.reply().await
    }

    /// One transaction, a command at a time: MAIL FROM:<from>, a RCPT each,
    /// DATA and `message`. The final reply, or the first that ends it
    /// early (a refused MAIL, a DATA without 354).
    pub async fn send_mail(&mut self, from: &str, rcpts: &[&str], message: &str) -> String {
        let mail = self.command(&format!("MAIL FROM:<{from}>")).await;
        if !mail.starts_with('2') {
            return mail;
        }
        for rcpt in rcpts {
            self.command(&format!("RCPT TO:<{rcpt}>")).await;
        }
        let data = self.command("DATA").await;
        if !data.starts_with("354") {
            return data;
        }
        self.data_message(message).await
    }

    /// Everything until the peer closes, or what came within `within`.
    pub async fn until_closed(&mut self, within: Duration) -> Vec<u8> {
        let mut got = Vec::new();
        let _ = tokio::time::timeout(within, self.stream.read_to_end(&mut got)).await;
        got
    }
}

/// One message through `addr`: greeting, `EHLO client.test`,
/// [`SmtpClient::send_mail`], QUIT; the transaction's final reply.
pub async fn deliver(addr: SocketAddr, from: &str, rcpts: &[&str], message: &str) -> String {
    let mut client = SmtpClient::ready(addr).await;
    let reply = client.send_mail(from, rcpts, message).await;
    client.command("QUIT").await;
    reply
}

/// A raw dialogue: the greeting, then each command's reply; after DATA,
/// `message` ([`SmtpClient::data_message`]) and its final reply.
pub async fn smtp(addr: SocketAddr, commands: &[String], message: Option<&str>) -> Vec<String> {
    let mut client = SmtpClient::connect(addr).await;
    let mut replies = vec![client.reply().await];
    for command in commands {
        replies.push(client.command(command).await);
        if command == "DATA" {
            replies.push(client.data_message(message.unwrap_or("")).await);
        }
    }
    replies
}

/// A connection to `relay` from `source` (any of 127.0.0.0/8 on Linux
/// loopback), to play a balancer or a host that is not one.
pub async fn connect_from(source: &str, relay: SocketAddr) -> TcpStream {
    let socket = TcpSocket::new_v4().unwrap();
    socket.bind(format!("{source}:0").parse().unwrap()).unwrap();
    socket.connect(relay).await.unwrap()
}

/// Runs `future` to its end on a runtime of its own: the client for a test
/// that holds no runtime (one driving Postfix, or the relay binary).
pub fn block_on<F: Future>(future: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
        .block_on(future)
}

/// A small message from goo.ne.jp with a Message-ID and a Date.
pub const BODY: &str = "From: Goo <news@goo.ne.jp>\r\nTo: b@example.com\r\nSubject: hello\r\nMessage-ID: <1@goo.ne.jp>\r\nDate: Sun, 22 Nov 2026 08:00:00 +0900\r\n\r\nHello from the relay test.\r\n";

/// Sends one message over plain SMTP with mail-send, a real client
/// library; the final reply as `code x.y.z text`.
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

/// The code, enhanced code and text of an SMTP refusal (mail-send's error).
pub fn refused_code(err: mail_send::Error) -> (u16, [u8; 3], String) {
    match err {
        mail_send::Error::UnexpectedReply(r) => (r.code, r.esc, r.message),
        other => panic!("expected an SMTP refusal, got {other}"),
    }
}

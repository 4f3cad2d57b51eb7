//! The cutover tests' shared harness: a config with the SES fake, a legacy
//! route and the admin token, and a raw client for pipelined transactions.

use std::net::SocketAddr;
use std::time::Duration;

use ses_relay::config::{Config, HumanDuration, LegacyConfig, LegacyTls};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use super::ses_fake::SesFake;
use super::{TempDir, test_config};

/// The admin token the cutover tests' configs carry.
pub const TOKEN: &str = "s3cret-token";

/// SES at `percent`, the rest to the legacy relay at `legacy`, state and token in `dir`.
pub fn cutover_config(ses: &SesFake, legacy: SocketAddr, dir: &TempDir, percent: f64) -> Config {
    let mut config = test_config(&ses.endpoint());
    config.legacy = Some(LegacyConfig {
        relay: legacy.to_string(),
        tls: LegacyTls::None,
        idle_timeout: HumanDuration(Duration::from_secs(30)),
        connect_timeout: HumanDuration(Duration::from_secs(2)),
        ..LegacyConfig::default()
    });
    config.cutover.ses_percent = Some(percent);
    config.cutover.state_file = dir.path("state/cutover.json");
    std::fs::write(dir.path("token"), format!("{TOKEN}\n")).unwrap();
    config.admin.token_file = dir.path("token");
    config.smtp.max_connections = 100;
    config
}

/// Reads whole SMTP replies from a stream.
pub struct Replies {
    stream: TcpStream,
    buf: Vec<u8>,
}

impl Replies {
    pub async fn connect(addr: SocketAddr) -> Replies {
        let stream = TcpStream::connect(addr).await.unwrap();
        let mut r = Replies {
            stream,
            buf: Vec::new(),
        };
        assert!(r.next().await.starts_with("220"));
        r.send("EHLO client.test\r\n").await;
        assert!(r.next().await.starts_with("250"));
        r
    }

    pub async fn send(&mut self, text: &str) {
        self.stream.write_all(text.as_bytes()).await.unwrap();
    }

    pub async fn next(&mut self) -> String {
        loop {
            let mut start = 0;
            while let Some(lf) = self.buf[start..].iter().position(|&b| b == b'\n') {
                let line_end = start + lf + 1;
                if self.buf.get(start + 3) != Some(&b'-') {
                    let reply: Vec<u8> = self.buf.drain(..line_end).collect();
                    return String::from_utf8_lossy(&reply).into_owned();
                }
                start = line_end;
            }
            let mut chunk = [0u8; 8192];
            let n = tokio::time::timeout(Duration::from_secs(30), self.stream.read(&mut chunk))
                .await
                .expect("reply in time")
                .unwrap();
            assert!(n > 0, "connection closed");
            self.buf.extend_from_slice(&chunk[..n]);
        }
    }

    /// One whole transaction, pipelined as Postfix does; returns the final reply.
    pub async fn transaction(&mut self, from: &str, to: &str, message_id: &str) -> String {
        self.send(&format!("MAIL FROM:<{from}>\r\nRCPT TO:<{to}>\r\nDATA\r\n"))
            .await;
        for expected in ["250", "250", "354"] {
            let reply = self.next().await;
            assert!(reply.starts_with(expected), "{from} -> {to}: {reply}");
        }
        self.send(&format!(
            "From: <{from}>\r\nTo: <{to}>\r\nSubject: split\r\nMessage-ID: <{message_id}>\r\n\r\nbody\r\n.\r\n"
        ))
        .await;
        self.next().await
    }
}

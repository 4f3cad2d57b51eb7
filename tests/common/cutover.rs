//! The cutover tests' shared harness: a config with the SES fake, a legacy
//! route and the admin token, and a pipelined transaction.

use std::net::SocketAddr;
use std::time::Duration;

use ses_relay::config::{Config, HumanDuration, LegacyConfig, LegacyTls};

use super::client::SmtpClient;
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

/// One whole transaction on a client past EHLO, pipelined as Postfix does
/// (MAIL, RCPT and DATA in one write); the final reply.
pub async fn transaction(smtp: &mut SmtpClient, from: &str, to: &str, message_id: &str) -> String {
    let replies = smtp
        .pipeline(&[
            &format!("MAIL FROM:<{from}>"),
            &format!("RCPT TO:<{to}>"),
            "DATA",
        ])
        .await;
    for (reply, expected) in replies.iter().zip(["250", "250", "354"]) {
        assert!(reply.starts_with(expected), "{from} -> {to}: {reply}");
    }
    assert_eq!(replies.len(), 3, "{from} -> {to}: {replies:?}");
    smtp.data_message(format!(
        "From: <{from}>\r\nTo: <{to}>\r\nSubject: split\r\nMessage-ID: <{message_id}>\r\n\r\nbody\r\n"
    ))
    .await
}

//! The rollback guard tests' shared harness: the guard's config with a legacy
//! route and an admin token, a date for a `Received:` header.

use std::time::Duration;

use ses_relay::config::{Config, HumanDuration, LegacyConfig, LegacyTls};

use super::smtp_sink::SmtpSink;
use super::{TempDir, test_config};

/// The admin token the guard tests' configs carry.
pub const TOKEN: &str = "guard-test-token";

/// SES 100 %, a legacy route to `sink`, the guard on with a small
/// min-transactions and a window long enough for a slow machine.
pub fn guard_config(endpoint: &str, sink: &SmtpSink, dir: &TempDir, min: u64) -> Config {
    let mut config = test_config(endpoint);
    config.legacy = Some(LegacyConfig {
        relay: sink.addr.to_string(),
        tls: LegacyTls::None,
        connect_timeout: HumanDuration(Duration::from_secs(2)),
        ..LegacyConfig::default()
    });
    config.cutover.ses_percent = Some(100.0);
    config.cutover.state_file = dir.path("state/cutover.json");
    std::fs::write(dir.path("token"), format!("{TOKEN}\n")).unwrap();
    config.admin.token_file = dir.path("token");
    config.guard.enabled = true;
    config.guard.window = HumanDuration(Duration::from_secs(60));
    config.guard.min_transactions = min;
    config
}

/// `secs_ago` seconds before now, as a `Received:` header dates it (RFC 5322).
pub fn rfc822(secs_ago: i64) -> String {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    mail_parser::DateTime::from_timestamp(now - secs_ago).to_rfc822()
}

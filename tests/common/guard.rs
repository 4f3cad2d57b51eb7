//! The rollback guard tests' shared harness: the guard's config with a legacy
//! route and an admin token, the admin API's `/cutover`, a metric's value,
//! a date for a `Received:` header.

use std::time::Duration;

use serde_json::Value;
use ses_relay::admin::client::request;
use ses_relay::config::{Config, HumanDuration, LegacyConfig, LegacyTls};

use super::smtp_sink::SmtpSink;
use super::{RunningRelay, TempDir, test_config};

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

/// `method` on `/cutover` (PUT with the token); the status and the JSON body.
pub async fn admin(relay: &RunningRelay, method: &str, body: Option<String>) -> (u16, Value) {
    let addr = relay.admin_addr.unwrap();
    let method = method.to_string();
    let answer = tokio::task::spawn_blocking(move || {
        let token = (method == "PUT").then_some(TOKEN);
        request(addr, &method, "/cutover", token, body.as_deref()).unwrap()
    })
    .await
    .unwrap();
    let json = serde_json::from_str(&answer.body).unwrap_or(Value::Null);
    (answer.status, json)
}

/// `GET /cutover`'s JSON body.
pub async fn cutover(relay: &RunningRelay) -> Value {
    admin(relay, "GET", None).await.1
}

/// The value of `series` in Prometheus text, 0 when absent.
pub fn metric(text: &str, series: &str) -> f64 {
    text.lines()
        .find_map(|l| l.strip_prefix(series))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0.0)
}

/// `secs_ago` seconds before now, as a `Received:` header dates it (RFC 5322).
pub fn rfc822(secs_ago: i64) -> String {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    mail_parser::DateTime::from_timestamp(now - secs_ago).to_rfc822()
}

//! The fleet tests' shared harness: two relays sharing one cutover through
//! moto's SSM, with moto's SES v2 and an SMTP sink as the legacy relay; the
//! admin API as an operator uses it, and where a message went.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use ses_relay::config::{Config, CutoverStore, HumanDuration, LegacyConfig, LegacyTls};
use ses_relay::control::admin::client::Answer;

use super::admin::{cutover, set_cutover};
use super::client::deliver;
use super::peers::{Moto, moto_identity};
use super::smtp_sink::SmtpSink;
use super::wait::{ok_if, wait_until_async};
use super::{RunningRelay, TempDir, test_config};

pub const TOKEN: &str = "fleet-token";
pub const PARAMETER: &str = "/ses-relay/test/cutover";
pub const CONFIG_SET: &str = "ses-migration-production-config-set";
pub const REFRESH: Duration = Duration::from_secs(1);

pub fn fleet_config(
    ses: &str,
    ssm: &str,
    legacy: SocketAddr,
    dir: &TempDir,
    configured: f64,
) -> Config {
    let mut config = test_config(ses);
    config.legacy = Some(LegacyConfig {
        relay: legacy.to_string(),
        tls: LegacyTls::None,
        connect_timeout: HumanDuration(Duration::from_secs(2)),
        ..LegacyConfig::default()
    });
    config.cutover.ses_percent = Some(configured);
    config.cutover.store = CutoverStore::Ssm;
    config.cutover.ssm_parameter = PARAMETER.into();
    config.cutover.refresh_interval = HumanDuration(REFRESH);
    config.cutover.endpoint_url = ssm.into();
    config.cutover.state_file = dir.path("state/cutover.json");
    std::fs::write(dir.path("token"), TOKEN).unwrap();
    config.admin.token_file = dir.path("token");
    config
}

/// `PUT /cutover` through `relay` with the fleet's token.
pub async fn set(relay: &RunningRelay, percent: f64, reason: &str) -> Answer {
    set_cutover(relay, TOKEN, percent, reason).await
}

/// Polls `relay` until its percentage is `percent`; returns how long it took.
pub async fn until_percent(relay: &RunningRelay, percent: f64, within: Duration) -> Duration {
    let started = Instant::now();
    wait_until_async(within, || async {
        let status = cutover(relay).await;
        ok_if(
            status["ses_percent"].as_f64() == Some(percent),
            format!("{percent}% not in force: {status}"),
        )
    })
    .await;
    started.elapsed()
}

/// Sends one message tagged `tag` through `relay`; the final reply.
pub async fn send(relay: &RunningRelay, tag: &str) -> String {
    let message =
        format!("From: news@goo.ne.jp\r\nTo: user@example.com\r\nSubject: {tag}\r\n\r\nfleet\r\n");
    deliver(
        relay.addr,
        "news@goo.ne.jp",
        &["user@example.com"],
        &message,
    )
    .await
}

/// Where the message tagged `tag` went: `ses` (moto), `legacy` (the sink), or nowhere.
pub fn route_of(ses: &Moto, legacy: &SmtpSink, tag: &str) -> &'static str {
    let subject = format!("Subject: {tag}\r\n");
    if ses.sent().iter().any(|m| m.raw.contains(&subject)) {
        "ses"
    } else if legacy
        .messages()
        .iter()
        .any(|m| String::from_utf8_lossy(&m.data).contains(&subject))
    {
        "legacy"
    } else {
        "nowhere"
    }
}

pub async fn prepare_ses(endpoint: &str) {
    moto_identity(endpoint, "goo.ne.jp", CONFIG_SET).await;
}

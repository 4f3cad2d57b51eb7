//! Preflight against real answers: moto's SES v2 emulator for the account,
//! identity and configuration-set checks, an injected DNS answer for the DKIM
//! record, the in-process SMTP sink (or a closed port) for the legacy relay.

mod common;

use std::collections::HashMap;

use aws_sdk_sesv2::config::{Credentials, SharedCredentialsProvider};
use common::peers::{Moto, moto_missing, run_or_skip};
use common::smtp_sink::SmtpSink;
use common::{demo_txt, test_config};
use ses_relay::config::{LegacyConfig, LegacyTls, SesMode};
use ses_relay::tools::dns::StaticResolver;
use ses_relay::tools::preflight::{Finding, Level, run};

fn resolver(record: &str) -> StaticResolver {
    let mut answers = HashMap::new();
    answers.insert(
        "gooid-21-prod._domainkey.goo.ne.jp".to_string(),
        vec![record.to_string()],
    );
    StaticResolver(answers)
}

fn line<'a>(findings: &'a [Finding], check: &str) -> &'a Finding {
    findings
        .iter()
        .find(|f| f.check.starts_with(check))
        .unwrap_or_else(|| panic!("no {check} line in {findings:#?}"))
}

fn credentials() -> Option<SharedCredentialsProvider> {
    Some(SharedCredentialsProvider::new(Credentials::new(
        "test", "test", None, None, "test",
    )))
}

#[tokio::test]
async fn dns_and_legacy_checks_without_ses() {
    let sink = SmtpSink::start().await;
    let mut config = test_config("");
    config.ses.mode = SesMode::Outbox;
    config.ses.outbox_dir = std::env::temp_dir();
    config.legacy = Some(LegacyConfig {
        relay: sink.addr.to_string(),
        tls: LegacyTls::None,
        ..LegacyConfig::default()
    });
    let findings = run(&config, &resolver(&demo_txt()), None).await;
    assert_eq!(line(&findings, "config").level, Level::Pass);
    assert_eq!(line(&findings, "dkim key").level, Level::Pass);
    assert_eq!(
        line(&findings, "dkim dns").level,
        Level::Pass,
        "{findings:#?}"
    );
    assert_eq!(
        line(&findings, "legacy relay").level,
        Level::Pass,
        "{findings:#?}"
    );
    assert!(
        line(&findings, "legacy relay")
            .detail
            .contains("legacy.test")
    );

    // Another key in DNS, and a dead legacy relay: both FAIL, with reasons.
    let wrong = demo_txt().replace("p=MIIB", "p=MIIC");
    let refusing = common::RefusingPort::bind();
    let closed = refusing.addr;
    config.legacy.as_mut().unwrap().relay = closed.to_string();
    let findings = run(&config, &resolver(&wrong), None).await;
    let dns = line(&findings, "dkim dns");
    assert_eq!(dns.level, Level::Fail);
    assert!(dns.detail.contains("does not match"), "{dns}");
    assert_eq!(line(&findings, "legacy relay").level, Level::Fail);
    let missing = run(&config, &StaticResolver::default(), None).await;
    assert!(line(&missing, "dkim dns").detail.contains("NXDOMAIN"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(
    not(has_moto),
    ignore = "needs moto (SES emulator): run tests/peers/install.sh"
)]
async fn ses_checks_against_moto() {
    if !run_or_skip("ses_checks_against_moto", moto_missing()) {
        return;
    }
    let moto = tokio::task::spawn_blocking(Moto::start).await.unwrap();
    let endpoint = moto.endpoint();
    let mut config = test_config(&endpoint);
    // moto's first answers can be slow on a busy machine: no 5 s cut here.
    config.ses.timeout = ses_relay::config::HumanDuration(std::time::Duration::from_secs(30));
    // The identity exists, the configuration set does not yet. (moto's answer to a BYODKIM
    // CreateEmailIdentity carries a timestamp the SDK cannot parse, so the identity is plain.)
    let client = ses_relay::message::forward::ses::client(&config.ses, credentials()).await;
    client
        .create_email_identity()
        .email_identity("goo.ne.jp")
        .send()
        .await
        .unwrap();
    let findings = run(&config, &resolver(&demo_txt()), credentials()).await;
    for finding in &findings {
        println!("{finding}");
    }
    assert_eq!(line(&findings, "dkim dns").level, Level::Pass);
    let set = line(&findings, "ses configuration set");
    assert_eq!(set.level, Level::Fail, "{set}");
    // moto 5 does not implement GetAccount (HTTP 404): a FAIL with the reason, never a crash.
    let account = line(&findings, "ses account");
    assert_eq!(account.level, Level::Fail, "{account}");
    assert!(account.detail.contains("GetAccount: HTTP 404"), "{account}");
    // moto reports domain identities created through v2 as not yet verified for sending.
    let identity = line(&findings, "ses identity goo.ne.jp");
    assert!(
        identity.detail.contains("verified for sending"),
        "{identity}"
    );
    let dkim = line(&findings, "ses identity goo.ne.jp dkim");
    assert!(dkim.detail.contains("signing origin"), "{dkim}");

    client
        .create_configuration_set()
        .configuration_set_name(&config.ses.configuration_set)
        .send()
        .await
        .unwrap();
    config.ses.max_send_rate = 0.0;
    let findings = run(&config, &resolver(&demo_txt()), credentials()).await;
    let set = line(&findings, "ses configuration set");
    assert_eq!(set.level, Level::Pass, "{set}");
    drop(moto);
}

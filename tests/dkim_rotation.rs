//! DKIM key rotation against a real DNS server: dnsmasq publishes the
//! records, the relay binary checks them through `[dkim] resolver`, real
//! Postfix submits through it into moto, and dkimpy verifies every message
//! with the key it looks up in the same DNS. Also `dkim new-key`'s output.
//!
//! Skips with the reason printed when a peer is missing, unless
//! `SES_RELAY_REQUIRE_PEERS=1` (as `.ci/run` sets), where a missing peer fails.

mod common;

use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use common::client::{block_on, deliver};
use common::dnsmasq::{Dnsmasq, dkimpy_verify_dns, dnsmasq_missing};
use common::metrics::Metrics;
use common::peers::{Moto, Postfix, moto_identity, moto_missing, postfix_missing, run_or_skip};
use common::relay_process::{RelayProcess, write_config};
use common::wait::{ok_if, wait_until};
use common::{TempDir, demo_key, demo_txt, ses_relay};

const CONFIG_SET: &str = "ses-migration-production-config-set";
const OLD: &str = "gooid-21-prod";
const NEW: &str = "gooid-22-prod";

/// `ses-relay dkim new-key` into `dir`: the key file and what it printed.
fn new_key(dir: &TempDir, selector: &str) -> (std::path::PathBuf, String) {
    let out = dir.path(&format!("{selector}.pem"));
    let (code, stdout, stderr) = ses_relay(&[
        "dkim",
        "new-key",
        "--domain",
        "goo.ne.jp",
        "--selector",
        selector,
        "--out",
        out.to_str().unwrap(),
    ]);
    assert_eq!(code, 0, "{stdout}{stderr}");
    (out, stdout)
}

/// The TXT value of the zone line `new-key` printed, its strings joined.
fn printed_record(stdout: &str, selector: &str) -> String {
    let line = stdout
        .lines()
        .find(|l| l.starts_with(&format!("{selector}._domainkey.goo.ne.jp. 3600 IN TXT (")))
        .unwrap_or_else(|| panic!("no TXT line in {stdout}"));
    let strings: Vec<&str> = line.split('"').skip(1).step_by(2).collect();
    assert!(
        strings.len() >= 2,
        "a 2048-bit key needs two strings: {line}"
    );
    assert!(strings.iter().all(|s| s.len() <= 255), "{line}");
    strings.concat()
}

#[test]
fn new_key_writes_a_private_file_prints_its_record_and_never_overwrites() {
    use std::os::unix::fs::PermissionsExt;
    let dir = TempDir::new("new-key");
    let (key, stdout) = new_key(&dir, NEW);
    let mode = std::fs::metadata(&key).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);
    let record = printed_record(&stdout, NEW);
    // The record parses as a DKIM key record (mail-auth's parser) ...
    use mail_auth::common::parse::TxtRecordParser;
    mail_auth::common::verify::DomainKey::parse(record.as_bytes()).expect("record parses");
    // ... and carries the file's key: the relay's own check against the file.
    let config = ses_relay::config::DkimConfig {
        keys: vec![ses_relay::config::DkimKeyConfig {
            domain: "goo.ne.jp".into(),
            selector: NEW.into(),
            private_key: key.clone(),
            created: None,
        }],
        ..Default::default()
    };
    let keys = ses_relay::message::prepare::dkim::DkimKeys::load(&config).unwrap();
    assert_eq!(keys.keys()[0].check_record(&record), Ok(()));
    let other = ses_relay::message::prepare::dkim::DkimKeys::load(&ses_relay::config::DkimConfig {
        keys: vec![ses_relay::config::DkimKeyConfig {
            private_key: demo_key(),
            ..config.keys[0].clone()
        }],
        ..Default::default()
    })
    .unwrap();
    assert!(other.keys()[0].check_record(&record).is_err());
    // The config block and the SES command.
    for expected in [
        "[[dkim.keys]]",
        "domain = \"goo.ne.jp\"",
        &format!("selector = \"{NEW}\""),
        &format!("private-key = \"{}\"", key.display()),
        "created = \"",
        "aws sesv2 put-email-identity-dkim-signing-attributes --email-identity goo.ne.jp",
        "--signing-attributes-origin EXTERNAL",
        "SigningAttributesOrigin=EXTERNAL",
        &format!("DomainSigningSelector={NEW}"),
    ] {
        assert!(stdout.contains(expected), "{expected} missing:\n{stdout}");
    }
    assert!(
        !stdout.contains("BEGIN PRIVATE KEY"),
        "the private key is not printed"
    );
    // A second run refuses to overwrite, and the file stays as it was.
    let before = std::fs::read(&key).unwrap();
    let (code, _, stderr) = ses_relay(&[
        "dkim",
        "new-key",
        "--domain",
        "goo.ne.jp",
        "--selector",
        NEW,
        "--out",
        key.to_str().unwrap(),
    ]);
    assert_eq!(code, 1);
    assert!(stderr.contains("never overwritten"), "{stderr}");
    assert_eq!(std::fs::read(&key).unwrap(), before);
}

fn start_relay(dir: &TempDir, moto: &str, dns: &str, new: &Path) -> RelayProcess {
    let config = format!(
        r#"
[smtp]
listen = ["127.0.0.1:0"]
hostname = "ses-relay.test"
allowed-clients = ["127.0.0.0/8"]

[dkim]
dns-check-interval = "1h"
rotation-check-interval = "1s"
publish-confirmations = 3
resolver = "{dns}"

[[dkim.keys]]
domain = "goo.ne.jp"
selector = "{OLD}"
private-key = "{old}"

[[dkim.keys]]
domain = "goo.ne.jp"
selector = "{NEW}"
private-key = "{new}"

[ses]
mode = "api"
region = "ap-northeast-1"
endpoint-url = "{moto}"
configuration-set = "{CONFIG_SET}"
timeout = "20s"

[log]
format = "json"

[admin]
listen = "127.0.0.1:0"
"#,
        old = demo_key().display(),
        new = new.display(),
    );
    RelayProcess::start(dir, &write_config(dir, &config))
}

/// The value of `ses_relay_dkim_key_active` for `selector`, from the admin API.
fn active(admin: SocketAddr, selector: &str) -> Option<f64> {
    gauge(admin, "ses_relay_dkim_key_active", selector)
}

/// Submits message `n` to Postfix.
fn submit(postfix: &Postfix, n: usize) {
    let message = format!(
        "From: news@goo.ne.jp\r\nTo: user@example.com\r\nSubject: rotation {n}\r\nMessage-ID: <rotation-{n}@goo.ne.jp>\r\n\r\nmessage {n}"
    );
    let addr = ([127, 0, 0, 1], postfix.port).into();
    let reply = block_on(deliver(
        addr,
        "news@goo.ne.jp",
        &["user@example.com"],
        &message,
    ));
    assert!(reply.starts_with("250"), "postfix: {reply:?}");
}

/// Waits until moto has `n` messages; returns them (raw, CRLF).
fn wait_for_messages(
    moto: &Moto,
    n: usize,
    postfix: &Postfix,
    relay: &RelayProcess,
) -> Vec<String> {
    wait_until(Duration::from_secs(120), || {
        let sent = moto.sent();
        match sent.len() >= n {
            true => Ok(sent
                .iter()
                .map(|m| m.raw.replace("\r\n", "\n").replace('\n', "\r\n"))
                .collect()),
            false => Err(format!(
                "moto has {} of {n} messages\npostfix:\n{}\nrelay:\n{}",
                sent.len(),
                postfix.log(),
                relay.log()
            )),
        }
    })
}

/// `rotation-N` of a message.
fn number(raw: &str) -> usize {
    let at = raw.find("Message-ID: <rotation-").expect("our Message-ID") + 22;
    raw[at..].split('@').next().unwrap().parse().unwrap()
}

#[test]
fn postfix_through_a_key_rotation_into_moto_every_message_verifies_in_dns() {
    let missing = postfix_missing()
        .or_else(moto_missing)
        .or_else(dnsmasq_missing);
    if !run_or_skip(
        "postfix_through_a_key_rotation_into_moto_every_message_verifies_in_dns",
        missing,
    ) {
        return;
    }
    let dir = TempDir::new("dkim-rotation");
    let (new_pem, printed) = new_key(&dir, NEW);
    let new_record = printed_record(&printed, NEW);
    let old_record = (format!("{OLD}._domainkey.goo.ne.jp"), demo_txt());

    // 1. Only the old record is published.
    let dns = Dnsmasq::start(std::slice::from_ref(&old_record));
    let moto = Moto::start();
    tokio::runtime::Runtime::new()
        .unwrap()
        .block_on(moto_identity(&moto.endpoint(), "goo.ne.jp", CONFIG_SET));
    let relay = start_relay(&dir, &moto.endpoint(), &dns.addr(), &new_pem);
    let admin = relay.admin();
    let postfix = Postfix::start(relay.smtp.port(), &[]);
    const BEFORE: usize = 3;
    for n in 0..BEFORE {
        submit(&postfix, n);
    }
    let first = wait_for_messages(&moto, BEFORE, &postfix, &relay);
    for (ok, verdict) in dkimpy_verify_dns(&first, &dns.addr()) {
        assert!(ok, "{verdict}");
        assert!(verdict.contains(&format!("s={OLD}")), "{verdict}");
    }
    assert_eq!(active(admin, OLD), Some(1.0));
    assert_eq!(active(admin, NEW), Some(0.0));

    // 2. Both records: mail keeps flowing while the relay confirms the new one.
    let dns = dns.restart(&[
        old_record,
        (format!("{NEW}._domainkey.goo.ne.jp"), new_record),
    ]);
    let mut n = BEFORE;
    wait_until(Duration::from_secs(60), || {
        if active(admin, NEW) == Some(1.0) {
            return Ok(());
        }
        submit(&postfix, n);
        n += 1;
        Err("the new key was never confirmed")
    });
    assert_eq!(active(admin, OLD), Some(0.0));
    for _ in 0..3 {
        submit(&postfix, n);
        n += 1;
    }

    // 3. Every message signed once, verified in DNS; the selector moves once, forward.
    let mut all = wait_for_messages(&moto, n, &postfix, &relay);
    all.sort_by_key(|raw| number(raw));
    let verdicts = dkimpy_verify_dns(&all, &dns.addr());
    let mut selectors = Vec::new();
    for (raw, (ok, verdict)) in all.iter().zip(&verdicts) {
        assert!(ok, "message {} did not verify: {verdict}", number(raw));
        assert_eq!(raw.matches("DKIM-Signature:").count(), 1, "{raw}");
        selectors.push(if verdict.contains(&format!("s={NEW}")) {
            NEW
        } else {
            OLD
        });
    }
    let switch = selectors
        .iter()
        .position(|s| *s == NEW)
        .expect("some signed with the new key");
    assert!(
        selectors[switch..].iter().all(|s| *s == NEW),
        "never back to the old key: {selectors:?}"
    );
    assert!(switch >= BEFORE, "{selectors:?}");
    println!(
        "rotation: {} messages, the first {switch} with {OLD}, the rest with {NEW}",
        all.len()
    );

    let log = relay.log();
    let audits: Vec<serde_json::Value> = log
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|l| l["audit"] == "dkim")
        .collect();
    assert_eq!(audits.len(), 1, "one audit line:\n{log}");
    assert_eq!(audits[0]["domain"], "goo.ne.jp");
    assert_eq!(audits[0]["old_selector"], OLD);
    assert_eq!(audits[0]["new_selector"], NEW);
    assert!(
        audits[0]["confirmations"].as_u64() >= Some(3),
        "{}",
        audits[0]
    );
}

/// A series of the admin API's metrics, e.g. `ses_relay_dkim_key_confirmations`.
fn gauge(admin: SocketAddr, name: &str, selector: &str) -> Option<f64> {
    Metrics::scrape_blocking(admin)?.value(name, &[("domain", "goo.ne.jp"), ("selector", selector)])
}

#[test]
fn a_new_record_carrying_another_key_is_never_used() {
    if !run_or_skip(
        "a_new_record_carrying_another_key_is_never_used",
        dnsmasq_missing(),
    ) {
        return;
    }
    let dir = TempDir::new("dkim-wrong-record");
    let (new_pem, _) = new_key(&dir, NEW);
    // The new selector's name publishes the old key: it matches nothing of the new file.
    let dns = Dnsmasq::start(&[
        (format!("{OLD}._domainkey.goo.ne.jp"), demo_txt()),
        (format!("{NEW}._domainkey.goo.ne.jp"), demo_txt()),
    ]);
    let relay = start_relay(&dir, "http://127.0.0.1:9", &dns.addr(), &new_pem);
    let admin = relay.admin();
    // Ten checks at the rotation's pace (1 s): the old key's count passes 3, the new one's stays 0.
    wait_until(Duration::from_secs(30), || {
        let checks = gauge(admin, "ses_relay_dkim_key_confirmations", OLD).unwrap_or(0.0);
        ok_if(checks >= 10.0, format!("the checks do not run: {checks}"))
    });
    assert_eq!(
        gauge(admin, "ses_relay_dkim_key_confirmations", NEW),
        Some(0.0)
    );
    assert_eq!(active(admin, NEW), Some(0.0));
    assert_eq!(active(admin, OLD), Some(1.0));
    assert_eq!(gauge(admin, "ses_relay_dkim_key_pending", NEW), Some(1.0));
    assert_eq!(
        gauge(admin, "ses_relay_dkim_dns_consistent", NEW),
        Some(0.0)
    );
    let log = relay.log();
    assert!(!log.contains("\"audit\":\"dkim\""), "no switch:\n{log}");
}

#[tokio::test]
async fn preflight_lists_the_rotation_set_the_signing_key_and_the_pending_one() {
    use ses_relay::tools::preflight::Level;
    let dir = TempDir::new("dkim-preflight");
    let (new_pem, printed) = new_key(&dir, NEW);
    let mut config = common::test_config("");
    config.ses.mode = ses_relay::config::SesMode::Outbox;
    config.ses.outbox_dir = dir.0.clone();
    config.dkim.keys.push(ses_relay::config::DkimKeyConfig {
        domain: "goo.ne.jp".into(),
        selector: NEW.into(),
        private_key: new_pem,
        created: None,
    });
    let record = |published: &[(&str, String)]| {
        ses_relay::tools::dns::StaticResolver(
            published
                .iter()
                .map(|(s, r)| (format!("{s}._domainkey.goo.ne.jp"), vec![r.clone()]))
                .collect(),
        )
    };
    let line = |findings: &[ses_relay::tools::preflight::Finding], check: &str| {
        findings
            .iter()
            .find(|f| f.check == check)
            .unwrap_or_else(|| panic!("no {check} in {findings:#?}"))
            .clone()
    };
    // Only the old record: the old key signs, the new one waits (a warning, not a failure).
    let old_only = record(&[(OLD, demo_txt())]);
    let findings = ses_relay::tools::preflight::run(&config, &old_only, None).await;
    let set = line(&findings, "dkim rotation goo.ne.jp");
    assert_eq!(set.level, Level::Warn, "{set}");
    assert!(
        set.detail
            .contains(&format!("signs with {OLD} (record matches)")),
        "{set}"
    );
    assert!(
        set.detail.contains(&format!("pending: {NEW} (no record)")),
        "{set}"
    );
    let new_dns = line(&findings, &format!("dkim dns {NEW}._domainkey.goo.ne.jp"));
    assert_eq!(new_dns.level, Level::Warn, "{new_dns}");
    assert!(
        findings.iter().all(|f| f.level != Level::Fail),
        "{findings:#?}"
    );
    assert!(set.to_string().len() <= ses_relay::tools::preflight::MAX_LINE);

    // Both records: the new key would sign, nothing pending.
    let both = record(&[(OLD, demo_txt()), (NEW, printed_record(&printed, NEW))]);
    let findings = ses_relay::tools::preflight::run(&config, &both, None).await;
    let set = line(&findings, "dkim rotation goo.ne.jp");
    assert_eq!(set.level, Level::Pass, "{set}");
    assert!(
        set.detail.contains(&format!(
            "signs with {NEW} (record matches); nothing pending"
        )),
        "{set}"
    );

    // No record at all: the first key would sign without one, a failure.
    let findings = ses_relay::tools::preflight::run(&config, &record(&[]), None).await;
    let set = line(&findings, "dkim rotation goo.ne.jp");
    assert_eq!(set.level, Level::Fail, "{set}");
    assert!(
        set.detail
            .contains(&format!("signs with {OLD} (no record)")),
        "{set}"
    );
}

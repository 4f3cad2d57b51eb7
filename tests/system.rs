//! System test with real peers nobody here wrote: a real Postfix instance
//! relays through the ses-relay binary to moto's SES v2 emulator, and dkimpy
//! verifies the signature of what moto received.
//!
//! Skips with the reason printed when a peer is missing, unless
//! `SES_RELAY_REQUIRE_PEERS=1` (as `.ci/run` sets), where a missing peer fails.

mod common;

use std::process::{Command, Stdio};
use std::time::Duration;

use common::child::KillOnDrop;
use common::client::{SmtpClient, block_on};
use common::peers::{
    Moto, Postfix, dkimpy_verify, free_port, moto_identity, moto_missing, postfix_missing,
    run_or_skip, wait_for_port,
};
use common::relay_process::{RelayProcess, write_config};
use common::wait::{ok_if, wait_until};
use common::{TempDir, demo_key, demo_txt};

const CONFIG_SET: &str = "ses-migration-production-config-set";

fn peers_or_skip(test: &str) -> bool {
    run_or_skip(test, postfix_missing().or_else(moto_missing))
}

fn start_relay(dir: &TempDir, moto_endpoint: &str, extra: &str) -> RelayProcess {
    let config = format!(
        r#"
[smtp]
listen = ["127.0.0.1:0"]
hostname = "ses-relay.test"
allowed-clients = ["127.0.0.0/8"]

[[dkim.keys]]
domain = "goo.ne.jp"
selector = "gooid-21-prod"
private-key = "{key}"

[ses]
mode = "api"
region = "ap-northeast-1"
endpoint-url = "{moto_endpoint}"
configuration-set = "{CONFIG_SET}"
timeout = "20s"

[log]
mask-pii = true

[admin]
listen = "127.0.0.1:0"

{extra}
"#,
        key = demo_key().display()
    );
    RelayProcess::start(dir, &write_config(dir, &config))
}

/// Creates the verified domain identity and the configuration set in moto.
fn prepare_moto(endpoint: &str) {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(moto_identity(endpoint, "goo.ne.jp", CONFIG_SET));
}

/// Submits one message to Postfix over plain SMTP.
fn submit(port: u16, from: &str, rcpts: &[&str], message: &str) {
    block_on(async {
        let mut postfix = SmtpClient::greeted(([127, 0, 0, 1], port).into()).await;
        postfix.ehlo("client.test").await;
        postfix.expect(&format!("MAIL FROM:<{from}>"), "250").await;
        for rcpt in rcpts {
            postfix.expect(&format!("RCPT TO:<{rcpt}>"), "250").await;
        }
        postfix.expect("DATA", "354").await;
        let reply = postfix.data_message(message).await;
        assert!(reply.starts_with("250"), "postfix said {reply:?}");
        postfix.expect("QUIT", "221").await;
    });
}

#[test]
#[cfg_attr(
    not(all(has_postfix, has_moto)),
    ignore = "needs Postfix (as root) and moto: run tests/peers/install.sh"
)]
fn postfix_through_ses_relay_into_moto_signed_and_complete() {
    if !peers_or_skip("postfix_through_ses_relay_into_moto_signed_and_complete") {
        return;
    }
    let dir = TempDir::new("system");
    let moto = Moto::start();
    prepare_moto(&moto.endpoint());
    let relay = start_relay(&dir, &moto.endpoint(), "");
    let postfix = Postfix::start(relay.smtp.port(), &[]);

    let message = "From: Goo News <news@goo.ne.jp>\r\n\
                   To: to@example.com\r\n\
                   Cc: cc@example.com\r\n\
                   Subject: system test\r\n\
                   Message-ID: <system-test-1@goo.ne.jp>\r\n\
                   \r\n\
                   Delivered by Postfix, signed by ses-relay, received by moto.\r\n";
    let rcpts = ["to@example.com", "cc@example.com", "bcc-only@example.net"];
    submit(postfix.port, "news@goo.ne.jp", &rcpts, message);

    let sent = wait_until(Duration::from_secs(90), || {
        let sent = moto.sent();
        match sent.is_empty() {
            false => Ok(sent),
            true => Err(format!(
                "moto received nothing\npostfix log:\n{}\nrelay log:\n{}",
                postfix.log(),
                relay.log()
            )),
        }
    });
    let relay_log = relay.log();
    assert_eq!(
        sent.len(),
        1,
        "moto received {} messages\npostfix log:\n{}\nrelay log:\n{relay_log}",
        sent.len(),
        postfix.log()
    );
    let msg = &sent[0];
    assert_eq!(msg.source, "news@goo.ne.jp");
    for rcpt in rcpts {
        assert!(
            msg.destinations.iter().any(|d| d == rcpt),
            "{rcpt} missing from {:?}",
            msg.destinations
        );
    }
    let raw = msg.raw.replace("\r\n", "\n").replace('\n', "\r\n");
    assert!(
        raw.contains(&format!("X-SES-CONFIGURATION-SET: {CONFIG_SET}\r\n")),
        "configuration-set header missing:\n{raw}"
    );
    assert_eq!(
        raw.matches("DKIM-Signature:").count(),
        1,
        "exactly one signature:\n{raw}"
    );
    assert!(
        raw.contains("by ses-relay.test (ses-relay) with ESMTP id"),
        "our Received header:\n{raw}"
    );
    let (ok, verdict) = dkimpy_verify(raw.as_bytes(), &demo_txt());
    assert!(ok, "dkimpy: {verdict}\n{raw}");
    assert!(
        verdict.starts_with("pass d=goo.ne.jp s=gooid-21-prod"),
        "{verdict}"
    );
    println!("dkimpy: {verdict}");

    // Postfix saw 250 (not a deferral) and its queue is empty: nothing held anywhere.
    wait_until(Duration::from_secs(30), || {
        ok_if(
            postfix.queued() == 0,
            format_args!("postfix still holds mail:\n{}", postfix.log()),
        )
    });
    assert!(
        postfix
            .log()
            .contains("status=sent (250 2.0.0 Ok: queued as"),
        "{}",
        postfix.log()
    );
    // Logs mask addresses by default.
    assert!(
        !relay_log.contains("news@goo.ne.jp"),
        "unmasked address in the log:\n{relay_log}"
    );
}

/// Postfix's own smtp-sink as the legacy relay, one file per message.
struct SmtpSink {
    _child: KillOnDrop,
    dir: std::path::PathBuf,
}

impl SmtpSink {
    fn start(dir: &TempDir, port: u16) -> SmtpSink {
        let dump = dir.path("sink");
        std::fs::create_dir_all(&dump).unwrap();
        Command::new("chown")
            .args(["nobody", dump.to_str().unwrap()])
            .status()
            .unwrap();
        let child = Command::new("/usr/sbin/smtp-sink")
            .args([
                "-u",
                "nobody",
                "-d",
                &format!("{}/%M%S.", dump.display()),
                &format!("127.0.0.1:{port}"),
                "100",
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("smtp-sink starts");
        wait_for_port(port, Duration::from_secs(10), "smtp-sink");
        SmtpSink {
            _child: KillOnDrop(child),
            dir: dump,
        }
    }

    /// Message-IDs of the messages dumped so far.
    fn message_ids(&self) -> Vec<String> {
        std::fs::read_dir(&self.dir)
            .map(|entries| {
                entries
                    .filter_map(|e| e.ok())
                    .filter_map(|e| std::fs::read_to_string(e.path()).ok())
                    .filter_map(|text| message_id(&text))
                    .collect()
            })
            .unwrap_or_default()
    }
}

fn message_id(text: &str) -> Option<String> {
    text.lines()
        .find_map(|l| l.strip_prefix("Message-ID: <"))
        .map(|id| id.trim_end_matches(['>', '\r']).to_string())
}

#[test]
#[cfg_attr(
    not(all(has_postfix, has_moto)),
    ignore = "needs Postfix (as root) and moto: run tests/peers/install.sh"
)]
fn postfix_split_half_to_moto_half_to_the_legacy_smtp_sink_none_lost_none_twice() {
    if !peers_or_skip(
        "postfix_split_half_to_moto_half_to_the_legacy_smtp_sink_none_lost_none_twice",
    ) {
        return;
    }
    let dir = TempDir::new("system-split");
    let moto = Moto::start();
    prepare_moto(&moto.endpoint());
    let sink_port = free_port();
    let sink = SmtpSink::start(&dir, sink_port);
    let legacy = format!(
        "[legacy]\nrelay = \"127.0.0.1:{sink_port}\"\ntls = \"none\"\n\n[cutover]\nses-percent = 50\nstate-file = \"\"\n"
    );
    let relay = start_relay(&dir, &moto.endpoint(), &legacy);
    let postfix = Postfix::start(relay.smtp.port(), &[]);

    const N: usize = 40;
    for i in 0..N {
        let message = format!(
            "From: news@goo.ne.jp\r\nTo: user{i}@example.com\r\nSubject: split {i}\r\nMessage-ID: <split-{i}@goo.ne.jp>\r\n\r\nmessage {i}\r\n"
        );
        let rcpt = format!("user{i}@example.com");
        submit(postfix.port, "news@goo.ne.jp", &[rcpt.as_str()], &message);
    }
    let (in_ses, in_legacy) = wait_until(Duration::from_secs(120), || {
        let in_ses: Vec<String> = moto
            .sent()
            .iter()
            .filter_map(|m| message_id(&m.raw))
            .collect();
        let in_legacy = sink.message_ids();
        match in_ses.len() + in_legacy.len() >= N && postfix.queued() == 0 {
            true => Ok((in_ses, in_legacy)),
            false => Err(format!(
                "{} to moto, {} to smtp-sink, {} queued of {N}\n{}",
                in_ses.len(),
                in_legacy.len(),
                postfix.queued(),
                postfix.log()
            )),
        }
    });
    println!(
        "split: {} to moto (SES), {} to smtp-sink (legacy)",
        in_ses.len(),
        in_legacy.len()
    );
    let mut all: Vec<String> = in_ses.iter().chain(&in_legacy).cloned().collect();
    all.sort();
    let total = all.len();
    all.dedup();
    assert_eq!(
        all.len(),
        total,
        "a message reached both routes (or one twice)"
    );
    for i in 0..N {
        assert!(
            all.contains(&format!("split-{i}@goo.ne.jp")),
            "split-{i} lost\n{}",
            postfix.log()
        );
    }
    assert_eq!(total, N);
    assert!(
        !in_ses.is_empty() && !in_legacy.is_empty(),
        "at 50 % both routes get mail"
    );
    assert_eq!(
        postfix.queued(),
        0,
        "postfix still holds mail:\n{}",
        postfix.log()
    );
}

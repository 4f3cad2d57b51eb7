//! SIGHUP reloads of the `ses-relay` binary (a good config applies, a bad one
//! is refused and the running one stays, changed routing rules apply to the
//! next transactions), and `ses-relay cutover status|set` against it.

use std::net::SocketAddr;
use std::time::Duration;

mod common;

use common::client::{SmtpClient, block_on, deliver};
use common::relay_process::{RelayProcess, read_log};
use common::wait::wait_until;
use common::{TempDir, ses_relay_against};

fn relay_config(dir: &TempDir, allowed: &str) -> String {
    format!(
        r#"
[smtp]
listen = ["127.0.0.1:0"]
allowed-clients = [{allowed}]
[ses]
mode = "outbox"
configuration-set = "cs"
outbox-dir = "{out}"
[legacy]
mode = "outbox"
outbox-dir = "{out}"
[cutover]
ses-percent = 10
state-file = "{state}"
[admin]
listen = "127.0.0.1:0"
token-file = "{token}"
"#,
        out = dir.path("out").display(),
        state = dir.path("cutover.json").display(),
        token = dir.path("token").display(),
    )
}

/// The greeting of a new connection; empty when none is possible.
fn greeting(addr: SocketAddr) -> String {
    block_on(async {
        match tokio::net::TcpStream::connect(addr).await {
            Ok(stream) => SmtpClient::over(stream).reply().await,
            Err(_) => String::new(),
        }
    })
}

fn wait_for_greeting(addr: SocketAddr, prefix: &str) -> String {
    wait_until(Duration::from_secs(5), || {
        let greeting = greeting(addr);
        match greeting.starts_with(prefix) {
            true => Ok(greeting),
            false => Err(format!("greeted {greeting:?}, not {prefix}")),
        }
    })
}

/// `ses-relay cutover status|set` against a running relay, and SIGHUP reloads
/// that apply a good config and refuse a bad one.
#[cfg(unix)]
#[test]
fn cutover_cli_and_sighup_reload() {
    let dir = TempDir::new("reload");
    std::fs::write(dir.path("token"), "cli-token\n").unwrap();
    let config = dir.path("relay.toml");
    std::fs::write(&config, relay_config(&dir, "\"127.0.0.0/8\"")).unwrap();
    let config_arg = config.to_str().unwrap();
    let relay = RelayProcess::start(&dir, &config);
    let (smtp, admin) = (relay.smtp, relay.admin());
    let cli = |args: &[&str]| ses_relay_against(admin, args);
    assert!(wait_for_greeting(smtp, "220").starts_with("220"));

    let (code, stdout, stderr) = cli(&["cutover", "status", "--json", "--config", config_arg]);
    assert_eq!(code, 0, "{stderr}");
    assert!(stdout.contains("\"ses_percent\": 10.0"), "{stdout}");
    let (code, stdout, stderr) = cli(&["cutover", "status", "--config", config_arg]);
    assert_eq!(code, 0, "{stderr}");
    assert!(
        stdout.starts_with("percentage") && stdout.contains("10 % to SES, 90 % to legacy"),
        "{stdout}"
    );
    let (code, stdout, stderr) = cli(&[
        "cutover", "set", "30", "--reason", "week 1", "--config", config_arg,
    ]);
    assert_eq!(code, 0, "{stderr}");
    assert!(
        stdout.contains("30 % to SES") && stdout.contains("week 1"),
        "{stdout}"
    );
    let (code, _, stderr) = cli(&[
        "cutover", "set", "101", "--reason", "oops", "--config", config_arg,
    ]);
    assert_eq!(code, 1);
    assert!(stderr.contains("above 100"), "{stderr}");
    let state = std::fs::read_to_string(dir.path("cutover.json")).unwrap();
    assert!(
        state.contains("30.0") && state.contains("week 1"),
        "{state}"
    );

    // A good new config: loopback no longer allowed.
    std::fs::write(&config, relay_config(&dir, "\"10.0.0.0/8\"")).unwrap();
    relay.process.signal("HUP");
    assert!(
        wait_for_greeting(smtp, "554").starts_with("554 5.7.1"),
        "reload applied"
    );
    // A bad one is refused; the running config stays.
    std::fs::write(&config, "[smtp]\nno-such-key = 1\n").unwrap();
    relay.process.signal("HUP");
    relay.wait_for_log("the refusal", |log| log.contains("config reload refused"));
    assert!(
        greeting(smtp).starts_with("554 5.7.1"),
        "still the last good config"
    );
    // And the percentage set at runtime survived both reloads.
    let answer =
        ses_relay::control::admin::client::request(admin, "GET", "/cutover", None, None).unwrap();
    assert!(
        answer.body.contains("\"ses_percent\": 30.0"),
        "{}",
        answer.body
    );
    std::fs::write(&config, relay_config(&dir, "\"127.0.0.0/8\"")).unwrap();
    relay.process.signal("HUP");
    assert!(
        wait_for_greeting(smtp, "220").starts_with("220"),
        "reload applied again"
    );

    let log_file = relay.log.clone();
    assert!(relay.stop().success());
    let log = read_log(&log_file);
    assert!(log.contains("config reload refused"), "{log}");
    assert!(
        log.contains("audit") && log.contains("week 1"),
        "audit line: {log}"
    );
}

/// One transaction; the final reply to DATA.
fn send_one(addr: SocketAddr, rcpt: &str) -> String {
    let message = format!("From: a@goo.ne.jp\r\nTo: {rcpt}\r\nSubject: rules\r\n\r\nbody\r\n");
    block_on(deliver(addr, "a@goo.ne.jp", &[rcpt], &message))
}

fn eml_count(dir: &std::path::Path) -> usize {
    std::fs::read_dir(dir).map_or(0, |entries| {
        entries
            .filter_map(Result::ok)
            .filter(|e| e.path().extension().is_some_and(|x| x == "eml"))
            .count()
    })
}

/// SIGHUP applies changed `[[cutover.rules]]` to the next transactions.
#[cfg(unix)]
#[test]
fn sighup_applies_changed_routing_rules() {
    let dir = TempDir::new("reload-rules");
    let (ses_out, legacy_out) = (dir.path("ses"), dir.path("legacy"));
    let config = |rules: &str| {
        format!(
            "[smtp]\nlisten = [\"127.0.0.1:0\"]\nallowed-clients = [\"127.0.0.0/8\"]\n\
             [ses]\nmode = \"outbox\"\nconfiguration-set = \"cs\"\noutbox-dir = \"{}\"\n\
             [legacy]\nmode = \"outbox\"\noutbox-dir = \"{}\"\n\
             [cutover]\nses-percent = 0\nstate-file = \"\"\n{rules}\
             [admin]\nlisten = \"127.0.0.1:0\"\n",
            ses_out.display(),
            legacy_out.display(),
        )
    };
    let path = dir.path("relay.toml");
    std::fs::write(
        &path,
        config("[[cutover.rules]]\nrecipient-domains = [\"docomo.ne.jp\"]\nroute = \"ses\"\n"),
    )
    .unwrap();
    let relay = RelayProcess::start(&dir, &path);
    let smtp = relay.smtp;
    assert!(wait_for_greeting(smtp, "220").starts_with("220"));
    // 0 % to SES: only the rule's recipients go there.
    assert!(send_one(smtp, "x@docomo.ne.jp").starts_with("250"));
    assert_eq!((eml_count(&ses_out), eml_count(&legacy_out)), (1, 0));
    assert!(send_one(smtp, "x@example.com").starts_with("250"));
    assert_eq!((eml_count(&ses_out), eml_count(&legacy_out)), (1, 1));

    // The rule now names the other domain.
    std::fs::write(
        &path,
        config("[[cutover.rules]]\nrecipient-domains = [\"example.com\"]\nroute = \"ses\"\n"),
    )
    .unwrap();
    relay.process.signal("HUP");
    relay.wait_for_log("the reload", |log| log.contains("config reloaded"));
    assert!(send_one(smtp, "x@example.com").starts_with("250"));
    assert_eq!(
        (eml_count(&ses_out), eml_count(&legacy_out)),
        (2, 1),
        "example.com now to SES"
    );
    assert!(send_one(smtp, "x@docomo.ne.jp").starts_with("250"));
    assert_eq!(
        (eml_count(&ses_out), eml_count(&legacy_out)),
        (2, 2),
        "docomo.ne.jp back to the split (legacy)"
    );

    assert!(relay.stop().success());
}

/// A reload never applies `[ses]` by halves: a changed `configuration-set`
/// is held back whole and named, so the `X-SES-CONFIGURATION-SET` header and
/// SendEmail's `ConfigurationSetName` keep naming the same set; the
/// reloadable rest of the same file applies.
#[tokio::test]
async fn a_changed_ses_section_is_held_back_whole_and_named() {
    use common::ses_fake::SesFake;
    let ses = SesFake::start().await;
    let running = common::test_config(&ses.endpoint());
    let relay = common::RunningRelay::start(running.clone()).await;
    let mut new = running.clone();
    new.ses.configuration_set = "another-set".into();
    new.ses.region = "us-east-1".into();
    new.smtp.max_recipients = 7;
    let reloaded =
        ses_relay::daemon::server::reload(&relay.control, &running, &new).expect("reload applies");
    assert_eq!(
        reloaded.held_back,
        vec!["ses.configuration-set", "ses.region"],
        "the keys that need a restart, named"
    );
    assert_eq!(
        reloaded.config.ses.configuration_set,
        running.ses.configuration_set
    );
    assert_eq!(
        relay.control.reloadable.current().smtp.max_recipients,
        7,
        "the rest applies"
    );

    let reply = common::fleet::send(&relay, "reload").await;
    assert!(reply.starts_with("250"), "{reply}");
    let sent = ses.requests().pop().expect("one SendEmail");
    let header = String::from_utf8_lossy(&sent.raw)
        .lines()
        .find_map(|l| {
            l.strip_prefix("X-SES-CONFIGURATION-SET: ")
                .map(str::to_string)
        })
        .expect("the header");
    assert_eq!(header, running.ses.configuration_set);
    assert_eq!(sent.configuration_set.as_deref(), Some(header.as_str()));
    assert!(relay.stop().await);
}

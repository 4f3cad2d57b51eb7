//! docs/quickstart.md's "Try it on one machine", run from the document
//! itself: the blocks marked `<!-- tests/quickstart.rs: NAME -->` are read
//! from the file and used as written, so the quickstart and this test cannot
//! drift apart. The shell blocks run with `sh`, the TOML blocks are set over
//! the shipped config (etc/ses-relay.toml, what the package installs), the
//! Postfix lines configure a real Postfix that sends one message to the relay
//! binary over TLS (`encrypt`), and dkimpy verifies what moto received.
//!
//! What the machine would hold is put in a scratch directory: `/etc/ses-relay`
//! and `/var/lib/ses-relay` move there, the ports are the test's own, the
//! group `ses-relay` (made by the package's postinst) is root's, and the
//! `ses-relay` command is the binary under test reading the scratch config.
//! What the test does itself in the document's place: install nothing, start
//! moto and Postfix (tests/common/peers.rs, the document's lines added to the
//! instance's `main.cf`), start the relay without systemd, and read the logs
//! from their files rather than the journal.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use common::TempDir;
use common::peers::{Moto, Postfix, dkimpy_verify, free_port, venv};
use common::relay_process::RelayProcess;

const QUICKSTART: &str = include_str!("../docs/quickstart.md");
const SHIPPED_CONFIG: &str = include_str!("../etc/ses-relay.toml");

/// The body of the fenced block right after `<!-- tests/quickstart.rs: NAME -->`.
fn block(name: &str) -> &'static str {
    let marker = format!("<!-- tests/quickstart.rs: {name} -->");
    let at = QUICKSTART
        .find(&marker)
        .unwrap_or_else(|| panic!("docs/quickstart.md has no block marked {name}"));
    let rest = QUICKSTART[at + marker.len()..].trim_start();
    assert!(
        rest.starts_with("```"),
        "the marker {name} is not followed by a code block"
    );
    let body = &rest[rest.find('\n').unwrap() + 1..];
    &body[..body.find("\n```").expect("the code block ends") + 1]
}

/// Shell lines with their `\` continuations joined.
fn joined(block: &str) -> String {
    block.replace("\\\n", " ")
}

/// The `main.cf` lines of a `postconf -e 'name = value' …` command.
fn postconf_lines(block: &str) -> Vec<String> {
    let text = joined(block);
    let command = text
        .lines()
        .find(|l| l.trim_start().starts_with("postconf -e "))
        .expect("a postconf -e command");
    command
        .split('\'')
        .skip(1)
        .step_by(2)
        .map(|line| line.trim().to_string())
        .collect()
}

/// The `name = value` lines of a `main.cf` block, comments left out.
fn main_cf_lines(block: &str) -> Vec<String> {
    block
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(String::from)
        .collect()
}

/// Sets every key of `over` in `base`, table by table (what "set these keys in
/// their tables" asks of the operator).
fn set_keys(base: &mut toml::Table, over: toml::Table) {
    for (key, value) in over {
        match (base.get_mut(&key), value) {
            (Some(toml::Value::Table(inner)), toml::Value::Table(value)) => set_keys(inner, value),
            (_, value) => {
                base.insert(key, value);
            }
        }
    }
}

/// The one machine of the trial, in a scratch directory.
struct Machine {
    dir: TempDir,
    relay_port: u16,
    admin_port: u16,
    moto_port: u16,
}

impl Machine {
    fn config_path(&self) -> PathBuf {
        self.dir.path("ses-relay.toml")
    }

    /// `text` with the machine's paths, ports, group and venv put in.
    fn localize(&self, text: &str) -> String {
        let root = self.dir.0.display();
        let repo = env!("CARGO_MANIFEST_DIR");
        let (relay, admin, moto) = (self.relay_port, self.admin_port, self.moto_port);
        text.replace("[127.0.0.1]:2525", &format!("[127.0.0.1]:{relay}"))
            .replace("127.0.0.1:2525", &format!("127.0.0.1:{relay}"))
            .replace("127.0.0.1:9925", &format!("127.0.0.1:{admin}"))
            .replace("127.0.0.1:5000", &format!("127.0.0.1:{moto}"))
            .replace("/etc/ses-relay/", &format!("{root}/etc/"))
            .replace("/var/lib/ses-relay", &format!("{root}/var"))
            .replace(
                "~/.cache/ses-relay-test-venv",
                &venv().display().to_string(),
            )
            .replace("tests/peers/", &format!("{repo}/tests/peers/"))
            .replace("-g ses-relay", "-g root")
            .replace("chgrp ses-relay", "chgrp root")
    }

    /// The shipped config with the document's TOML blocks set over it.
    fn config(&self, blocks: &[&str]) -> String {
        let mut config: toml::Table = SHIPPED_CONFIG.parse().expect("etc/ses-relay.toml parses");
        for name in blocks {
            let over: toml::Table = block(name)
                .parse()
                .unwrap_or_else(|e| panic!("the block {name} is not TOML: {e}"));
            set_keys(&mut config, over);
        }
        self.localize(&config.to_string())
    }

    /// Runs a shell block (localized) in the scratch directory: `ses-relay` is
    /// the binary under test on the scratch config, Postfix's commands use
    /// `postfix` when given. Returns stdout; fails the test on a non-zero exit.
    fn sh(&self, name: &str, postfix: Option<&Postfix>) -> String {
        let script = self.localize(block(name));
        let bin = self.dir.path("bin");
        std::fs::create_dir_all(&bin).unwrap();
        let wrapper = bin.join("ses-relay");
        std::fs::write(
            &wrapper,
            format!(
                "#!/bin/sh\nexec '{}' \"$@\" --config '{}'\n",
                env!("CARGO_BIN_EXE_ses-relay"),
                self.config_path().display()
            ),
        )
        .unwrap();
        run(&["chmod", "755", wrapper.to_str().unwrap()]);
        let path = format!(
            "{}:{}:/usr/sbin:/usr/bin:/sbin:/bin",
            bin.display(),
            std::env::var("PATH").unwrap_or_default()
        );
        let mut command = Command::new("timeout");
        command
            .args(["60", "sh", "-ec", &script])
            .current_dir(&self.dir.0)
            .env("PATH", path);
        if let Some(postfix) = postfix {
            command.env("MAIL_CONFIG", postfix.dir.path("etc"));
        }
        let out = command.output().unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
        assert!(
            out.status.success(),
            "the quickstart's block {name} failed ({}):\n{script}\nstdout:\n{stdout}\nstderr:\n{}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
        stdout
    }
}

fn run(args: &[&str]) {
    let status = Command::new(args[0]).args(&args[1..]).status().unwrap();
    assert!(status.success(), "{args:?} failed");
}

#[test]
fn the_one_machine_step_6_is_step_6_with_the_relay_on_loopback() {
    let production: Vec<String> = main_cf_lines(block("postfix-main-cf"))
        .iter()
        .map(|l| l.replace("ses-relay.goo.ne.jp", "127.0.0.1"))
        .collect();
    assert_eq!(postconf_lines(block("postfix-one-machine")), production);
    assert!(
        production.contains(&"smtp_tls_security_level = encrypt".to_string()),
        "Postfix is no longer told to require TLS: {production:?}"
    );
}

#[test]
#[cfg_attr(
    not(all(has_postfix, has_moto, has_dkimpy)),
    ignore = "needs Postfix (as root), moto and dkimpy: run tests/peers/install.sh"
)]
fn the_quickstart_on_one_machine_reaches_a_signed_message_through_postfix_over_tls() {
    let moto = Moto::start();
    let machine = Machine {
        dir: TempDir::new("quickstart"),
        relay_port: free_port(),
        admin_port: free_port(),
        moto_port: moto.port,
    };
    for sub in ["etc", "var"] {
        std::fs::create_dir_all(machine.dir.path(sub)).unwrap();
    }
    // The package's postinst makes the admin token.
    std::fs::write(
        machine.dir.path("etc/admin-token"),
        "0123456789abcdef0123456789abcdef",
    )
    .unwrap();

    // Steps 1 to 4 and "Before step 5": the key, the certificate, the config, moto.
    let config = machine.config(&["relay-tls", "relay-one-machine"]);
    std::fs::write(machine.config_path(), &config).unwrap();
    machine.sh("dkim-key", None);
    machine.sh("tls-cert", None);
    let check = Command::new(env!("CARGO_BIN_EXE_ses-relay"))
        .args(["check-config", "--config"])
        .arg(machine.config_path())
        .output()
        .unwrap();
    assert!(
        check.status.success(),
        "check-config: {}\n{config}",
        String::from_utf8_lossy(&check.stderr)
    );
    machine.sh("moto-identity", None);

    // Step 5: the relay (in the unit's place), then step 6: Postfix and one message.
    let relay = RelayProcess::start(&machine.dir, &machine.config_path());
    assert_eq!(
        relay.smtp.port(),
        machine.relay_port,
        "the document's listen address"
    );
    let lines: Vec<String> = postconf_lines(block("postfix-one-machine"))
        .iter()
        .map(|l| machine.localize(l))
        .collect();
    assert!(
        joined(block("postfix-one-machine")).contains("postconf -M tlsproxy/unix="),
        "smtp_tls_connection_reuse needs tlsproxy, which the quickstart no longer enables"
    );
    let extra: Vec<&str> = lines.iter().map(String::as_str).collect();
    let postfix = Postfix::start(machine.relay_port, &extra);
    machine.sh("send", Some(&postfix));

    let deadline = Instant::now() + Duration::from_secs(90);
    let sent = loop {
        let sent = moto.sent();
        if (!sent.is_empty() && postfix.queued() == 0) || Instant::now() > deadline {
            break sent;
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    assert_eq!(
        sent.len(),
        1,
        "moto received {} messages\npostfix log:\n{}\nrelay log:\n{}",
        sent.len(),
        postfix.log(),
        relay.log()
    );
    assert_eq!(postfix.queued(), 0, "{}", postfix.log());

    // What the document says to look at: the logs, then the signature.
    let logs = joined(block("logs"));
    let mut greps = 0;
    for line in logs.lines().filter(|l| !l.trim().is_empty()) {
        let pattern = line
            .split("grep '")
            .nth(1)
            .and_then(|p| p.split('\'').next())
            .unwrap_or_else(|| panic!("no grep '…' in {line:?}"));
        let (name, log) = if line.contains("-u postfix@-") {
            ("Postfix's", postfix.log())
        } else if line.contains("-u ses-relay") {
            ("the relay's", relay.log())
        } else {
            panic!("whose log does {line:?} read?")
        };
        assert!(
            log.contains(pattern),
            "{pattern:?} is not in {name} log:\n{log}"
        );
        greps += 1;
    }
    assert_eq!(greps, 3, "{logs}");

    let verdict = machine.sh("verify", None);
    assert!(
        verdict.starts_with("pass d=goo.ne.jp s=gooid-21-prod "),
        "{verdict}"
    );
    let raw = sent[0].raw.replace("\r\n", "\n").replace('\n', "\r\n");
    assert!(
        machine.dir.path("last.eml").exists(),
        "the verify block wrote no last.eml"
    );
    let txt = dns_record(&machine.config_path());
    let (ok, dkimpy) = dkimpy_verify(raw.as_bytes(), &txt);
    assert!(ok, "dkimpy: {dkimpy}\n{raw}");
    assert_eq!(raw.matches("DKIM-Signature:").count(), 1, "{raw}");
    assert!(
        raw.contains("X-SES-CONFIGURATION-SET: ses-migration-production-config-set\r\n"),
        "{raw}"
    );
    // The relay's own Received header: the message came to it over TLS.
    assert!(
        raw.contains("by ses-relay.goo.ne.jp (ses-relay) with ESMTPS id"),
        "{raw}"
    );
}

/// The TXT record value `ses-relay dkim dns-record` prints, its strings joined.
fn dns_record(config: &Path) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_ses-relay"))
        .args(["dkim", "dns-record", "--config"])
        .arg(config)
        .output()
        .unwrap();
    assert!(out.status.success(), "dkim dns-record failed");
    String::from_utf8_lossy(&out.stdout)
        .split('"')
        .skip(1)
        .step_by(2)
        .collect()
}

//! dnsmasq as a real DNS server on 127.0.0.1 for the DKIM record checks:
//! it answers the TXT records it is started with and nothing else (no
//! upstream, no hosts file), so a record is "published" by restarting it
//! with one more. Skips visibly when absent, as the other peers do.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use super::child::KillOnDrop;
use super::peers::{free_port, venv, wait_for_port};

const DNSMASQ: &str = "/usr/sbin/dnsmasq";

/// Why dnsmasq cannot run here, or None when it can.
pub fn dnsmasq_missing() -> Option<String> {
    (!Path::new(DNSMASQ).exists()).then(|| {
        "dnsmasq is not installed (Debian package dnsmasq-base; tests/peers/install.sh installs it)"
            .to_string()
    })
}

/// A dnsmasq answering fixed TXT records on 127.0.0.1:`port` (UDP and TCP).
pub struct Dnsmasq {
    pub port: u16,
    _child: KillOnDrop,
}

impl Dnsmasq {
    /// Starts on a free port with `records` (name, TXT value): dnsmasq must
    /// be told its port (0 turns DNS off), and keeps it across [`Dnsmasq::restart`].
    pub fn start(records: &[(String, String)]) -> Dnsmasq {
        Dnsmasq::start_on(free_port(), records)
    }

    /// Starts on `port`; waits until it accepts TCP (it binds UDP first).
    pub fn start_on(port: u16, records: &[(String, String)]) -> Dnsmasq {
        let mut command = Command::new(DNSMASQ);
        command.args([
            "--no-daemon",
            "--no-resolv",
            "--no-hosts",
            "--no-poll",
            "--bind-interfaces",
            "--listen-address=127.0.0.1",
            "--conf-file=/dev/null",
            "--user=root",
            "--pid-file",
            "--log-facility=-",
        ]);
        command.arg(format!("--port={port}"));
        for (name, value) in records {
            // dnsmasq splits a value longer than 255 bytes into several strings itself.
            command.arg(format!("--txt-record={name},{value}"));
        }
        let child = command
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("dnsmasq starts");
        let dns = Dnsmasq {
            port,
            _child: KillOnDrop(child),
        };
        wait_for_port(port, Duration::from_secs(10), "dnsmasq");
        dns
    }

    /// Stops it and starts it again on the same port with `records`.
    pub fn restart(self, records: &[(String, String)]) -> Dnsmasq {
        let port = self.port;
        drop(self);
        Dnsmasq::start_on(port, records)
    }

    /// `127.0.0.1:port`.
    pub fn addr(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }
}

/// Verifies each message's DKIM signatures with dkimpy, the keys looked up
/// in DNS at `server` (`IP:PORT`). One verdict per message:
/// `(passed, "pass d=... s=..."` or `"fail ..."`).
pub fn dkimpy_verify_dns(messages: &[String], server: &str) -> Vec<(bool, String)> {
    use std::io::Write;
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/peers/dkim_verify_dns.py");
    let mut child = Command::new(venv().join("bin/python"))
        .arg(script)
        .arg(server)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("dkimpy verifier starts");
    let input = serde_json::to_vec(messages).unwrap();
    child.stdin.take().unwrap().write_all(&input).unwrap();
    let out = child.wait_with_output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    let verdicts: Vec<(bool, String)> = text
        .lines()
        .map(|l| (l.starts_with("pass "), l.to_string()))
        .collect();
    assert_eq!(
        verdicts.len(),
        messages.len(),
        "dkimpy: {text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    verdicts
}

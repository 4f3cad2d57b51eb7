//! What the Debian package ships: the config it installs as
//! /etc/ses-relay/ses-relay.toml (loopback only, and `check-config` on it names
//! only what an operator must supply), its maintainer scripts and its
//! copyright. packaging/check-deb.sh checks the built .deb itself in CI.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use common::{TempDir, ses_relay_with};
use ses_relay::config::Config;

fn repo(path: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(path)
}

#[test]
fn the_shipped_config_listens_on_loopback_only() {
    let config = Config::load_str(
        &std::fs::read_to_string(repo("etc/ses-relay.toml")).unwrap(),
        Vec::new(),
    )
    .unwrap();
    let mut listeners = config.smtp.listen.clone();
    listeners.extend(&config.smtp.listen_tls);
    listeners.extend(config.admin.listen);
    assert!(!listeners.is_empty());
    for addr in listeners {
        assert!(addr.ip().is_loopback(), "{addr} is not a loopback address");
    }
}

/// With the admin token postinst generates, `check-config` on the shipped
/// config names exactly the files an operator must bring: the TLS certificate
/// and key, and the DKIM private key.
#[test]
fn check_config_on_the_shipped_config_names_only_what_the_operator_supplies() {
    let dir = TempDir::new("package");
    let token = dir.path("admin-token");
    std::fs::write(&token, "0123456789abcdef0123456789abcdef").unwrap();
    let shipped = repo("etc/ses-relay.toml");
    let (code, _, stderr) = ses_relay_with(
        &["check-config", "--config", shipped.to_str().unwrap()],
        |command| {
            command.env("SES_RELAY__ADMIN__TOKEN_FILE", &token);
        },
    );
    assert_eq!(code, 1, "{stderr}");
    let mut keys: Vec<&str> = stderr
        .lines()
        .filter(|l| !l.starts_with("warning:"))
        .filter_map(|l| l.split_once(": ").map(|(key, _)| key))
        .collect();
    keys.sort();
    assert_eq!(
        keys,
        ["dkim.keys[0].private-key", "smtp.tls.cert", "smtp.tls.key"],
        "{stderr}"
    );
    // The shipped file says so, so the operator learns it before check-config does.
    let text = std::fs::read_to_string(repo("etc/ses-relay.toml")).unwrap();
    for key in ["smtp.tls.cert", "smtp.tls.key", "dkim.keys[0].private-key"] {
        assert!(text.contains(key), "the shipped config does not name {key}");
    }
}

#[test]
fn the_maintainer_scripts_stop_on_remove_and_clean_up_on_purge_only() {
    let prerm = std::fs::read_to_string(repo("packaging/debian/prerm")).unwrap();
    let postrm = std::fs::read_to_string(repo("packaging/debian/postrm")).unwrap();
    let postinst = std::fs::read_to_string(repo("packaging/debian/postinst")).unwrap();
    assert!(prerm.contains("deb-systemd-invoke stop ses-relay.service"));
    assert!(prerm.contains("deb-systemd-helper disable ses-relay.service"));
    assert!(postinst.contains("/etc/ses-relay/admin-token"));
    // The removals sit in the `purge)` branch alone.
    let purge = postrm
        .split("purge)")
        .nth(1)
        .and_then(|rest| rest.split(";;").next())
        .expect("a purge) branch");
    for step in ["rm -rf /var/lib/ses-relay", "userdel ses-relay"] {
        assert!(purge.contains(step), "{step} not on purge");
        assert_eq!(postrm.matches(step).count(), 1, "{step} outside purge");
    }
    for script in ["prerm", "postrm", "postinst"] {
        let status = Command::new("sh")
            .args(["-n"])
            .arg(repo(&format!("packaging/debian/{script}")))
            .status()
            .unwrap();
        assert!(status.success(), "{script} is not valid sh");
    }
}

#[test]
fn the_licence_is_mit_or_apache_2_0_everywhere() {
    let manifest = std::fs::read_to_string(repo("Cargo.toml")).unwrap();
    assert!(manifest.contains("\nlicense = \"MIT OR Apache-2.0\"\n"));
    let copyright = std::fs::read_to_string(repo("packaging/copyright")).unwrap();
    assert!(copyright.starts_with(
        "Format: https://www.debian.org/doc/packaging-manuals/copyright-format/1.0/\n"
    ));
    assert!(copyright.contains("\nLicense: MIT or Apache-2.0\n"));
    assert!(
        copyright.contains("\nLicense: MIT\n") && copyright.contains("\nLicense: Apache-2.0\n")
    );
    let mit = std::fs::read_to_string(repo("LICENSE-MIT")).unwrap();
    assert!(mit.contains("Permission is hereby granted, free of charge"));
    let apache = std::fs::read_to_string(repo("LICENSE-APACHE")).unwrap();
    assert!(apache.contains("Apache License") && apache.contains("Version 2.0, January 2004"));
}

/// `run --dev` starts at 100 % SES every time (the README's first example
/// lands on SES): no cutover state file unless one is asked for.
#[test]
fn the_dev_config_keeps_no_cutover_state_unless_asked() {
    let dev = Config::load_dev(Vec::new()).unwrap();
    assert_eq!(dev.cutover.state_file, PathBuf::new());
    assert_eq!(dev.configured_ses_percent(), 100.0);
    let asked = Config::load_dev([(
        "SES_RELAY__CUTOVER__STATE_FILE".to_string(),
        "dev-state/cutover.json".to_string(),
    )])
    .unwrap();
    assert_eq!(
        asked.cutover.state_file,
        PathBuf::from("dev-state/cutover.json")
    );
}

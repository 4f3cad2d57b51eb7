use super::*;

fn no_env() -> Vec<(String, String)> {
    Vec::new()
}

fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

fn problems(config: &Config) -> Vec<String> {
    match config.validate() {
        Ok(()) => Vec::new(),
        Err(ConfigError::Invalid(p)) => p.into_iter().map(|p| p.key).collect(),
        Err(other) => panic!("unexpected {other}"),
    }
}

#[test]
fn defaults_fill_missing_keys() {
    let config = Config::load_str("[ses]\nconfiguration-set = \"cs\"\n", no_env()).unwrap();
    assert_eq!(config.smtp.max_recipients, 50);
    assert_eq!(config.smtp.max_message_size, ByteSize(40 << 20));
    assert_eq!(config.smtp.idle_timeout.0.as_secs(), 300);
    assert_eq!(config.ses.region, "ap-northeast-1");
    assert!(config.log.mask_pii);
    assert!(config.dkim.sign_subdomains);
    assert_eq!(config.dkim.headers[0], "From");
}

#[test]
fn unknown_keys_are_errors_naming_the_key() {
    let err = Config::load_str("[smtp]\nmax-recipeints = 5\n", no_env()).unwrap_err();
    assert!(err.to_string().contains("max-recipeints"), "{err}");
    let err = Config::load_str("[smpt]\n", no_env()).unwrap_err();
    assert!(err.to_string().contains("smpt"), "{err}");
}

#[test]
fn human_units_parse_and_bad_ones_name_the_key() {
    let config = Config::load_str(
        "[smtp]\nmax-message-size = \"10MiB\"\nidle-timeout = \"90s\"\n",
        no_env(),
    )
    .unwrap();
    assert_eq!(config.smtp.max_message_size.0, 10 << 20);
    assert_eq!(config.smtp.idle_timeout.0.as_secs(), 90);
    let err = Config::load_str("[smtp]\nidle-timeout = \"soon\"\n", no_env()).unwrap_err();
    assert!(err.to_string().contains("idle-timeout"), "{err}");
}

#[test]
fn environment_overrides_really_apply() {
    let config = Config::load_str(
        "[smtp]\nmax-recipients = 50\nhostname = \"a.example\"\n[ses]\nconfiguration-set = \"cs\"\n",
        env(&[
            ("SES_RELAY__SMTP__MAX_RECIPIENTS", "20"),
            ("SES_RELAY__SMTP__HOSTNAME", "b.example"),
            ("SES_RELAY__SMTP__REQUIRE_TLS", "true"),
            ("SES_RELAY__SMTP__IDLE_TIMEOUT", "45s"),
            ("SES_RELAY__SMTP__LISTEN", "[\"127.0.0.1:2626\"]"),
            ("SES_RELAY__SES__MODE", "outbox"),
            ("SES_RELAY__SES__CONFIGURATION_SET", "other-set"),
            ("SES_RELAY__LOG__MASK_PII", "false"),
            ("UNRELATED", "x"),
        ]),
    )
    .unwrap();
    assert_eq!(config.smtp.max_recipients, 20);
    assert_eq!(config.smtp.hostname, "b.example");
    assert!(config.smtp.require_tls);
    assert_eq!(config.smtp.idle_timeout.0.as_secs(), 45);
    assert_eq!(config.smtp.listen, vec!["127.0.0.1:2626".parse().unwrap()]);
    assert_eq!(config.ses.mode, SesMode::Outbox);
    assert_eq!(config.ses.configuration_set, "other-set");
    assert!(!config.log.mask_pii);
}

#[test]
fn every_structural_problem_is_reported_in_one_pass() {
    let text = r#"
        [smtp]
        listen-on = ["127.0.0.1:25"]
        max-recipients = "many"
        idle-timeout = "soon"
        [smpt]
        [[dkim.keys]]
        domain = "goo.ne.jp"
        [[dkim.keys]]
        domain = 5
        selector = "s"
        private-key = "/nonexistent.pem"
        [cutover]
        ses-percent = 12.345
    "#;
    let Err(ConfigError::Invalid(problems)) =
        Config::load_str(text, env(&[("SES_RELAY__ADMIN__NO_SUCH", "1")]))
    else {
        panic!("expected every problem");
    };
    let keys: Vec<&str> = problems.iter().map(|p| p.key.as_str()).collect();
    for key in [
        "smtp.listen-on",
        "smtp.max-recipients",
        "smtp.idle-timeout",
        "smpt",
        "dkim.keys[0].selector",
        "dkim.keys[1].domain",
        "admin.no-such",
        "cutover.ses-percent",
        "ses.configuration-set",
    ] {
        assert!(keys.contains(&key), "{key} not reported: {problems:#?}");
    }
    // A wrong type is one problem, not also a missing key.
    assert_eq!(
        keys.iter().filter(|k| **k == "dkim.keys[1].domain").count(),
        1
    );
    assert!(problems.iter().all(|p| !p.message.contains('\n')));
}

#[test]
fn environment_override_of_an_unknown_key_is_an_error() {
    let err = Config::load_str("", env(&[("SES_RELAY__SMTP__NO_SUCH_KEY", "1")])).unwrap_err();
    assert!(err.to_string().contains("no-such-key"), "{err}");
}

#[test]
fn validate_reports_every_problem_with_its_key() {
    let text = r#"
        [smtp]
        listen = []
        hostname = "bad host"
        allowed-clients = []
        max-message-size = "41MiB"
        max-recipients = 51
        max-connections = 0
        require-tls = true
        idle-timeout = "0s"
        [[dkim.keys]]
        domain = "nodot"
        selector = "sel"
        private-key = "/nonexistent/key.pem"
        [dkim]
        headers = ["From", "Message-ID", "X-SES-CONFIGURATION-SET"]
        [ses]
        endpoint-url = "ftp://x"
        max-send-rate = -1
        [log]
        level = "loud=="
    "#;
    let config = Config::load_str(text, no_env()).unwrap();
    let keys = problems(&config);
    for expected in [
        "smtp.listen",
        "smtp.hostname",
        "smtp.allowed-clients",
        "smtp.max-message-size",
        "smtp.max-recipients",
        "smtp.max-connections",
        "smtp.require-tls",
        "smtp.idle-timeout",
        "dkim.keys[0].domain",
        "dkim.keys[0].private-key",
        "dkim.headers[1]",
        "dkim.headers[2]",
        "ses.configuration-set",
        "ses.endpoint-url",
        "ses.max-send-rate",
        "log.level",
    ] {
        assert!(
            keys.contains(&expected.to_string()),
            "{expected} missing from {keys:?}"
        );
    }
}

#[test]
fn shipped_configs_parse() {
    let dev = Config::load_str(EMBEDDED_DEV_CONFIG, no_env()).unwrap();
    assert_eq!(dev.ses.mode, SesMode::Outbox);
    assert_eq!(dev.legacy.as_ref().unwrap().mode, LegacyMode::Outbox);
    // The README's first example takes the SES route; legacy.example takes legacy.
    assert_eq!(prod_percent(&dev), 100.0);
    assert_eq!(dev.cutover.rules[0].recipient_domains, ["legacy.example"]);
    assert!(dev.dkim.dns_check_interval.0.is_zero());
    let dev = Config::load_dev(no_env()).unwrap();
    assert!(dev.dev && dev.warnings().is_empty(), "{:?}", dev.warnings());
    let prod_text = include_str!("../../etc/ses-relay.toml");
    let prod = Config::load_str(prod_text, no_env()).unwrap();
    assert_eq!(
        prod.ses.configuration_set,
        "ses-migration-production-config-set"
    );
    assert_eq!(prod.dkim.keys[0].selector, "gooid-21-prod");
    assert_eq!(prod.dkim.keys[0].domain, "goo.ne.jp");
    assert_eq!(prod.ses.region, "ap-northeast-1");
    assert_eq!(prod_percent(&prod), 10.0);
    assert_eq!(prod.cutover.rules.len(), 2);
    assert_eq!(prod.legacy.as_ref().unwrap().relay, "10.0.0.25:25");
    for net in [
        "10.99.0.0/16",
        "10.88.80.0/20",
        "10.80.11.0/28",
        "10.80.0.0/24",
        "202.217.0.0/16",
    ] {
        assert!(
            prod.smtp.allowed_clients.contains(&net.parse().unwrap()),
            "{net}"
        );
    }
    // Only the files the production example points at are missing here.
    let missing = problems(&prod);
    assert!(
        missing.iter().all(|k| k.starts_with("smtp.tls.")
            || k.ends_with("private-key")
            || k == "admin.token-file"),
        "{missing:?}"
    );
}

#[cfg(unix)]
#[test]
fn key_readable_by_others_is_a_warning() {
    use std::os::unix::fs::PermissionsExt;
    let dir = std::env::temp_dir().join(format!("ses-relay-perm-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let key = dir.join("k.pem");
    std::fs::write(&key, "x").unwrap();
    let mut config = Config::default();
    config.dkim.keys.push(DkimKeyConfig {
        domain: "goo.ne.jp".into(),
        selector: "s".into(),
        private_key: key.clone(),
        created: None,
    });
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o644)).unwrap();
    assert_eq!(config.warnings()[0].key, "dkim.keys[0].private-key");
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o600)).unwrap();
    assert!(config.warnings().is_empty());
    std::fs::remove_dir_all(&dir).ok();
}

fn prod_percent(config: &Config) -> f64 {
    config.configured_ses_percent()
}

#[test]
fn cutover_and_legacy_validation() {
    let text = r#"
        [cutover]
        ses-percent = 50
        [[cutover.rules]]
        route = "legacy"
        [[cutover.rules]]
        sender-domains = ["bad domain"]
        route = "ses"
        [ses]
        configuration-set = "cs"
    "#;
    let keys = problems(&Config::load_str(text, no_env()).unwrap());
    for expected in [
        "cutover.ses-percent",
        "cutover.rules[0]",
        "cutover.rules[0].route",
        "cutover.rules[1]",
    ] {
        assert!(
            keys.contains(&expected.to_string()),
            "{expected} missing from {keys:?}"
        );
    }
    let text = r#"
        [legacy]
        relay = "no-port"
        max-connections = 0
        auth-user = "u"
        auth-password-file = "/nonexistent"
        [cutover]
        ses-percent = 101
        [ses]
        configuration-set = "cs"
    "#;
    let keys = problems(&Config::load_str(text, no_env()).unwrap());
    for expected in [
        "legacy.relay",
        "legacy.max-connections",
        "legacy.auth-password-file",
        "cutover.ses-percent",
    ] {
        assert!(
            keys.contains(&expected.to_string()),
            "{expected} missing from {keys:?}"
        );
    }
    // Defaults: 0 % with a legacy route (nothing moves until an operator says so), 100 % without.
    let with = Config::load_str("[legacy]\nrelay = \"127.0.0.1:25\"\n", no_env()).unwrap();
    assert_eq!(with.configured_ses_percent(), 0.0);
    assert_eq!(Config::default().configured_ses_percent(), 100.0);
}

#[test]
fn ses_tags_are_read_as_written_and_checked_with_their_key() {
    let config = Config::load_str(
        "[ses]\nconfiguration-set = \"cs\"\n[ses.tags]\nService = \"goo-mail\"\nteam_2 = \"mail-ops\"\n",
        no_env(),
    )
    .unwrap();
    let tags: Vec<(&str, &str)> = config
        .ses
        .tags
        .iter()
        .map(|(n, v)| (n.as_str(), v.as_str()))
        .collect();
    assert_eq!(tags, [("Service", "goo-mail"), ("team_2", "mail-ops")]);
    assert_eq!(problems(&config), Vec::<String>::new());
    let config = Config::load_str(
        "[ses]\nconfiguration-set = \"cs\"\ntags = { ok = \"1\", \"ses:x\" = \"y\", bad = \"a b\", empty = \"\" }\n",
        no_env(),
    )
    .unwrap();
    let mut keys = problems(&config);
    keys.sort();
    assert_eq!(keys, ["ses.tags.bad", "ses.tags.empty", "ses.tags.ses:x"]);
}

#[test]
fn admin_off_loopback_needs_a_read_token_file() {
    let base = "[ses]\nconfiguration-set = \"cs\"\n[admin]\n";
    for listen in ["0.0.0.0:9925", "10.0.0.5:9925", "[::]:9925"] {
        let config = Config::load_str(&format!("{base}listen = \"{listen}\"\n"), no_env()).unwrap();
        assert_eq!(problems(&config), ["admin.read-token-file"], "{listen}");
        let err = config.validate().unwrap_err().to_string();
        assert!(err.contains("loopback"), "{err}");
    }
    for listen in [
        "127.0.0.1:9925",
        "127.0.0.2:9925",
        "[::1]:9925",
        "[::ffff:127.0.0.1]:9925",
    ] {
        let config = Config::load_str(&format!("{base}listen = \"{listen}\"\n"), no_env()).unwrap();
        assert_eq!(problems(&config), Vec::<String>::new(), "{listen}");
    }
    let missing =
        format!("{base}listen = \"0.0.0.0:9925\"\nread-token-file = \"/nonexistent/read\"\n");
    let config = Config::load_str(&missing, no_env()).unwrap();
    assert_eq!(problems(&config), ["admin.read-token-file"]);
    let file = std::env::temp_dir().join(format!("ses-relay-read-token-{}", std::process::id()));
    std::fs::write(&file, "r\n").unwrap();
    let present = format!(
        "{base}listen = \"0.0.0.0:9925\"\nread-token-file = \"{}\"\n",
        file.display()
    );
    let config = Config::load_str(&present, no_env()).unwrap();
    assert_eq!(problems(&config), Vec::<String>::new());
    std::fs::remove_file(&file).ok();
}

#[test]
fn fleet_keys_parse_and_bad_ones_name_the_key() {
    let text = r#"
        [smtp]
        proxy-protocol = true
        proxy-trusted = ["10.0.0.0/8"]
        [cutover]
        store = "ssm"
        ssm-parameter = "/ses-relay/prod/cutover"
        refresh-interval = "1s"
        endpoint-url = "http://127.0.0.1:5000"
        [ses]
        configuration-set = "cs"
    "#;
    let config = Config::load_str(text, no_env()).unwrap();
    assert!(config.smtp.proxy_protocol);
    assert_eq!(
        config.smtp.proxy_trusted,
        vec!["10.0.0.0/8".parse().unwrap()]
    );
    assert_eq!(config.cutover.store, CutoverStore::Ssm);
    assert_eq!(config.cutover.refresh_interval.0.as_secs(), 1);
    assert!(
        !problems(&config)
            .iter()
            .any(|k| k.starts_with("cutover.") || k.starts_with("smtp.proxy"))
    );
    let defaults = Config::load_str("", no_env()).unwrap();
    assert!(!defaults.smtp.proxy_protocol);
    assert_eq!(defaults.cutover.store, CutoverStore::File);
    assert_eq!(defaults.cutover.refresh_interval.0.as_secs(), 10);
    let text = r#"
        [smtp]
        proxy-protocol = true
        [cutover]
        store = "ssm"
        ssm-parameter = "ses relay"
        refresh-interval = "0s"
        endpoint-url = "ftp://x"
        [ses]
        configuration-set = "cs"
    "#;
    let keys = problems(&Config::load_str(text, no_env()).unwrap());
    for expected in [
        "smtp.proxy-trusted",
        "cutover.ssm-parameter",
        "cutover.refresh-interval",
        "cutover.endpoint-url",
    ] {
        assert!(
            keys.contains(&expected.to_string()),
            "{expected} missing from {keys:?}"
        );
    }
    let missing = "[cutover]\nstore = \"ssm\"\n[ses]\nconfiguration-set = \"cs\"\n";
    let keys = problems(&Config::load_str(missing, no_env()).unwrap());
    assert!(
        keys.contains(&"cutover.ssm-parameter".to_string()),
        "{keys:?}"
    );
    assert!(Config::load_str("[cutover]\nstore = \"redis\"\n", no_env()).is_err());
}

#[test]
fn dkim_rotation_keys_have_their_defaults_and_name_their_problems() {
    let config = Config::load_str("[ses]\nconfiguration-set = \"cs\"\n", no_env()).unwrap();
    let dkim = &config.dkim;
    assert_eq!(dkim.rotation_check_interval.0.as_secs(), 60);
    assert_eq!(dkim.publish_confirmations, 3);
    assert_eq!(dkim.max_key_age.0.as_secs(), 365 * 86_400);
    assert_eq!(dkim.rotation_notice.0.as_secs(), 30 * 86_400);
    assert!(!dkim.require_published);
    assert_eq!(dkim.resolver_addr(), Ok(None));

    let text = |dkim: &str| {
        format!(
            "[ses]\nconfiguration-set = \"cs\"\n[dkim]\n{dkim}\n\
             [[dkim.keys]]\ndomain = \"goo.ne.jp\"\nselector = \"a\"\nprivate-key = \"etc/dev/dkim-demo.pem\"\ncreated = \"2025-09-12\"\n\
             [[dkim.keys]]\ndomain = \"goo.ne.jp\"\nselector = \"b\"\nprivate-key = \"etc/dev/dkim-demo.pem\"\n"
        )
    };
    // Two keys of one domain are its rotation set, not a mistake.
    let set = Config::load_str(&text("resolver = \"127.0.0.1:5353\""), no_env()).unwrap();
    assert!(problems(&set).is_empty(), "{:?}", problems(&set));
    assert_eq!(
        set.dkim.resolver_addr(),
        Ok(Some("127.0.0.1:5353".parse().unwrap()))
    );
    assert_eq!(set.dkim.keys[0].created.unwrap().to_string(), "2025-09-12");
    let bad = Config::load_str(
        &text(
            "publish-confirmations = 0\nrotation-check-interval = \"0s\"\nmax-key-age = \"30d\"\nrotation-notice = \"60d\"\n\
             resolver = \"dns.example\"\nrequire-published = true\ndns-check-interval = \"0s\"",
        ),
        no_env(),
    )
    .unwrap();
    assert_eq!(
        problems(&bad),
        [
            "dkim.rotation-check-interval",
            "dkim.publish-confirmations",
            "dkim.max-key-age",
            "dkim.rotation-notice",
            "dkim.resolver",
            "dkim.require-published"
        ]
    );
    // The same selector twice is a mistake; a bad date names its key.
    let twice = Config::load_str(
        &text("").replace("selector = \"b\"", "selector = \"a\""),
        no_env(),
    )
    .unwrap();
    assert_eq!(problems(&twice), ["dkim.keys[1].selector"]);
    let err = Config::load_str(&text("").replace("2025-09-12", "2025-02-30"), no_env())
        .unwrap_err()
        .to_string();
    assert!(err.contains("dkim.keys[0].created"), "{err}");
}

//! Target (c): the config loader on hostile numbers. No value of any numeric
//! key may panic the loader or `validate()`, and a value they refuse is
//! refused naming a key, never as a bare parse error.
//!
//! The numeric keys are found as tests/config_numbers.rs finds them: by
//! serializing a config with every optional section present and walking its
//! integer, float, duration (`"5m"`) and size (`"40MiB"`) leaves, so a key
//! added to the structs is fuzzed without touching this file.
//!
//! Input layout: lines, each setting one key. A line's first byte picks the
//! key (its low 7 bits, modulo the number of keys) and the channel (bit 7
//! set: the environment override `SES_RELAY__SECTION__KEY`, raw text, as an
//! operator's unit file would give it; clear: the file, where the rest of the
//! line must be a TOML value, `1e400` or `"366d"`, else the line is
//! skipped). Seed files start each line with a printable key byte.

use std::sync::LazyLock;

use ses_relay::config::{
    Config, ConfigError, DkimKeyConfig, LegacyConfig, LegacyMode, SesMode, numeric_keys,
};

/// The base document (every optional section, valid) and its numeric keys.
static BASE: LazyLock<(toml::Table, Vec<Vec<String>>)> = LazyLock::new(|| {
    let value = toml::Value::try_from(full_config()).expect("the base config serializes");
    let keys = numeric_keys(&value);
    assert!(keys.len() > 20, "too few numeric keys found: {keys:?}");
    let toml::Value::Table(table) = value else {
        unreachable!("a config serializes to a table")
    };
    (table, keys)
});

/// A config with every optional part present and valid (no TLS: its files
/// would have to exist, and it has no numeric key).
fn full_config() -> Config {
    let mut config = Config::default();
    config.smtp.listen = vec!["127.0.0.1:0".parse().expect("an address")];
    config.smtp.max_connections = 100;
    config.dkim.keys = vec![DkimKeyConfig {
        domain: "goo.ne.jp".into(),
        selector: "gooid-21-prod".into(),
        private_key: concat!(env!("CARGO_MANIFEST_DIR"), "/../etc/dev/dkim-demo.pem").into(),
        created: None,
    }];
    config.ses.mode = SesMode::Api;
    config.ses.endpoint_url = "http://127.0.0.1:9".into();
    config.ses.configuration_set = "fuzz-set".into();
    config.ses.max_send_rate = 10.0;
    config.legacy = Some(LegacyConfig {
        mode: LegacyMode::Outbox,
        outbox_dir: "/nonexistent/ses-relay-fuzz-outbox".into(),
        ..LegacyConfig::default()
    });
    config.cutover.ses_percent = Some(50.0);
    config.cutover.state_file = Default::default();
    config.admin.listen = Some("127.0.0.1:0".parse().expect("an address"));
    config.guard.enabled = true;
    config
}

/// `SES_RELAY__SMTP__MAX_CONNECTIONS` for `smtp.max-connections`.
fn env_name(path: &[String]) -> String {
    let segments: Vec<String> = path
        .iter()
        .map(|key| key.to_ascii_uppercase().replace('-', "_"))
        .collect();
    format!("SES_RELAY__{}", segments.join("__"))
}

fn set(table: &mut toml::Table, path: &[String], leaf: toml::Value) {
    let (last, parents) = path.split_last().expect("a key path is never empty");
    let mut node = table;
    for key in parents {
        node = node
            .get_mut(key)
            .and_then(toml::Value::as_table_mut)
            .expect("the path's tables exist in the base");
    }
    node.insert(last.clone(), leaf);
}

/// The target: see the module docs.
pub fn run(data: &[u8]) {
    let (base, keys) = &*BASE;
    let mut document = base.clone();
    let mut env = Vec::new();
    for line in data.split(|&b| b == b'\n') {
        let Some((&pick, value)) = line.split_first() else {
            continue;
        };
        let Ok(value) = std::str::from_utf8(value) else {
            continue;
        };
        let path = &keys[usize::from(pick & 0x7f) % keys.len()];
        if pick & 0x80 != 0 {
            env.push((env_name(path), value.to_string()));
        } else if let Ok(mut parsed) = format!("v = {value}").parse::<toml::Table>()
            && let Some(leaf) = parsed.remove("v")
        {
            set(&mut document, path, leaf);
        }
    }
    let text = document.to_string();
    match Config::load_str(&text, env).and_then(|config| config.validate()) {
        Ok(()) => {}
        Err(ConfigError::Invalid(problems)) => {
            assert!(!problems.is_empty(), "refused with no problem");
            for problem in &problems {
                assert!(
                    !problem.key.is_empty(),
                    "a problem without its key: {problem}"
                );
            }
        }
        Err(ConfigError::Parse(message)) => {
            panic!("refused without naming a key: {message}\n{text}")
        }
    }
}

//! No value of any numeric config key may panic: not in loading, not in
//! validation, not in building the relay from it, not in its first session.
//! The keys are found by serializing a config with every optional section
//! present, so a key added to the structs is tried without touching this
//! test: every integer, float, duration (`"5m"`) and size (`"40MiB"`) leaf.
//! Each gets hostile values (0, -1, 1e-320, 1e308, NaN, infinities, huge
//! integers, `"1000000000000d"`, `"1e400"`…); a value the loader refuses must
//! be refused naming the key, and a value it takes must build a relay that
//! greets a client.

mod common;

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use aws_sdk_sesv2::config::{Credentials, SharedCredentialsProvider};
use common::client::SmtpClient;
use common::{TempDir, TestCa, demo_key};
use ses_relay::config::{
    Config, ConfigError, DkimKeyConfig, LegacyConfig, LegacyMode, SesMode, numeric_keys,
};
use ses_relay::daemon::server::{Server, ServerOptions};
use tokio::io::AsyncWriteExt;

/// Panics anywhere in the process (spawned tasks included), counted.
static PANICS: AtomicUsize = AtomicUsize::new(0);

/// A config with every optional part present and valid, outboxes in `dir`.
fn full_config(dir: &TempDir, ca: &TestCa) -> Config {
    let mut config = Config::default();
    config.smtp.listen = vec!["127.0.0.1:0".parse().unwrap()];
    config.smtp.tls = Some(ca.tls_config());
    config.smtp.max_connections = 100;
    config.dkim.keys = vec![DkimKeyConfig {
        domain: "goo.ne.jp".into(),
        selector: "gooid-21-prod".into(),
        private_key: demo_key(),
        created: None,
    }];
    config.ses.mode = SesMode::Api;
    config.ses.endpoint_url = "http://127.0.0.1:9".into();
    config.ses.configuration_set = "ses-migration-test".into();
    config.ses.max_send_rate = 10.0;
    config.legacy = Some(LegacyConfig {
        mode: LegacyMode::Outbox,
        outbox_dir: dir.path("outbox"),
        ..LegacyConfig::default()
    });
    config.cutover.ses_percent = Some(50.0);
    config.cutover.state_file = Default::default();
    config.admin.listen = Some("127.0.0.1:0".parse().unwrap());
    config.guard.enabled = true;
    config
}

fn hostile_values() -> Vec<toml::Value> {
    use toml::Value::{Float, Integer, String as Text};
    let mut values = vec![
        Integer(0),
        Integer(-1),
        Integer(1),
        Integer(i64::MAX),
        Integer(i64::MIN),
        Integer(4_294_967_296),
        Float(0.0),
        Float(-0.0),
        Float(1e-320),
        Float(1e-300),
        Float(0.009),
        Float(1e308),
        Float(-1e308),
        Float(f64::NAN),
        Float(f64::INFINITY),
        Float(f64::NEG_INFINITY),
    ];
    for text in [
        "0",
        "0s",
        "-1",
        "1ns",
        "365d",
        "366d",
        "1000000000000d",
        "584942417355y",
        "18446744073709551615",
        "99999999999999999999999",
        "1e400",
        "NaN",
        "inf",
        "",
        "99999999999999GiB",
        "18446744073709551615B",
        "16EiB",
    ] {
        values.push(Text(text.into()));
    }
    values
}

/// `value` as a config file (tables as sections, not one inline table).
fn document(value: &toml::Value) -> String {
    value.as_table().unwrap().to_string()
}

fn set(value: &mut toml::Value, path: &[String], leaf: toml::Value) {
    let (last, parents) = path.split_last().unwrap();
    let mut node = value;
    for key in parents {
        node = node.get_mut(key).unwrap();
    }
    node.as_table_mut().unwrap().insert(last.clone(), leaf);
}

/// Builds a relay from `config`, opens a session and says QUIT.
async fn build_and_greet(config: &Config) -> Result<(), String> {
    let options = ServerOptions {
        ses_credentials: Some(SharedCredentialsProvider::new(Credentials::new(
            "test", "test", None, None, "test",
        ))),
        txt_resolver: Some(Arc::new(ses_relay::tools::dns::StaticResolver(
            HashMap::new(),
        ))),
    };
    let server = Server::bind(config, options)
        .await
        .map_err(|err| format!("start refused: {err}"))?;
    let addr = server.local_addrs()[0].0;
    let shutdown = server.shutdown();
    let running = tokio::spawn(server.run());
    let mut client = SmtpClient::connect(addr).await;
    let greeting = tokio::time::timeout(Duration::from_secs(5), client.reply())
        .await
        .unwrap_or_default();
    let _ = client.stream().write_all(b"QUIT\r\n").await;
    shutdown.trigger();
    let _ = tokio::time::timeout(Duration::from_secs(10), running).await;
    match greeting.starts_with("220") {
        true => Ok(()),
        false => Err(format!("no greeting: {greeting:?}")),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_value_of_any_numeric_key_panics() {
    let default_hook = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        PANICS.fetch_add(1, Ordering::SeqCst);
        default_hook(info);
    }));
    let dir = TempDir::new("config-numbers");
    let ca = TestCa::new();
    let base = toml::Value::try_from(full_config(&dir, &ca)).unwrap();
    let keys = numeric_keys(&base);
    let dotted: Vec<String> = keys.iter().map(|k| k.join(".")).collect();
    // The walk sees every kind of number, the optional sections' included.
    for key in [
        "smtp.max-connections",
        "smtp.max-message-size",
        "smtp.idle-timeout",
        "ses.max-send-rate",
        "ses.timeout",
        "legacy.max-connections",
        "legacy.command-timeout",
        "cutover.ses-percent",
        "guard.window",
        "guard.max-failure-ratio",
        "feedback.poll-interval",
        "dkim.dns-check-interval",
    ] {
        assert!(dotted.iter().any(|k| k == key), "{key} not in {dotted:?}");
    }
    assert!(
        Config::load_str(&document(&base), Vec::new())
            .unwrap()
            .validate()
            .is_ok()
    );

    let mut built = 0;
    for (key, dotted) in keys.iter().zip(&dotted) {
        for hostile in hostile_values() {
            let mut value = base.clone();
            set(&mut value, key, hostile.clone());
            let text = document(&value);
            let checked = std::panic::catch_unwind(|| {
                Config::load_str(&text, Vec::new()).and_then(|config| {
                    config.validate()?;
                    Ok(config)
                })
            });
            let Ok(checked) = checked else {
                panic!("{dotted} = {hostile}: the loader panicked");
            };
            match checked {
                Ok(config) => {
                    built += 1;
                    if let Err(why) = build_and_greet(&config).await {
                        // Refusing at start is allowed (a file it cannot
                        // read), never a relay that cannot greet.
                        assert!(
                            why.starts_with("start refused"),
                            "{dotted} = {hostile}: {why}"
                        );
                    }
                }
                Err(ConfigError::Invalid(problems)) => {
                    assert!(
                        problems.iter().any(|p| p.key == *dotted),
                        "{dotted} = {hostile}: refused without naming the key: {problems:?}"
                    );
                }
                Err(ConfigError::Parse(message)) => {
                    panic!("{dotted} = {hostile}: refused without a key: {message}")
                }
            }
            assert_eq!(
                PANICS.load(Ordering::SeqCst),
                0,
                "{dotted} = {hostile}: a panic (see above)"
            );
        }
    }
    // Some hostile values are fine ones (0 for an interval that may be off, huge limits).
    assert!(built > 0);
}

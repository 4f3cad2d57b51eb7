use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use super::*;
use crate::config::{DkimConfig, DkimKeyConfig, KeyDate};
use crate::tools::dns::StaticResolver;

const DOMAIN: &str = "goo.ne.jp";

/// A scratch directory with a second key, removed on drop.
struct Scratch(PathBuf);

impl Scratch {
    fn new(tag: &str) -> Scratch {
        let dir =
            std::env::temp_dir().join(format!("ses-relay-rotation-{tag}-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        Scratch(dir)
    }

    /// A new RSA key at `name`, as `dkim new-key` makes it.
    fn new_key(&self, name: &str) -> PathBuf {
        let path = self.0.join(name);
        std::fs::write(&path, crate::tools::cli::dkim::generate_rsa_pem().unwrap()).unwrap();
        path
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn demo_key() -> PathBuf {
    concat!(env!("CARGO_MANIFEST_DIR"), "/etc/dev/dkim-demo.pem").into()
}

fn entry(selector: &str, private_key: PathBuf) -> DkimKeyConfig {
    DkimKeyConfig {
        domain: DOMAIN.into(),
        selector: selector.into(),
        private_key,
        created: None,
    }
}

/// The old demo key and a new one, three confirmations, a 1 s rotation pace.
fn rotation_keys(new_key: PathBuf) -> DkimKeys {
    let config = DkimConfig {
        keys: vec![entry("old", demo_key()), entry("new", new_key)],
        publish_confirmations: 3,
        rotation_check_interval: crate::config::HumanDuration(Duration::from_secs(1)),
        ..DkimConfig::default()
    };
    DkimKeys::load(&config).unwrap()
}

/// DNS publishing the records of `published` (selector, key index) of `keys`.
fn dns(keys: &DkimKeys, published: &[(&str, usize)]) -> StaticResolver {
    let mut answers = HashMap::new();
    for &(selector, index) in published {
        answers.insert(
            format!("{selector}._domainkey.{DOMAIN}"),
            vec![keys.keys()[index].record_value()],
        );
    }
    StaticResolver(answers)
}

fn signer(keys: &DkimKeys) -> String {
    keys.key_for(DOMAIN).unwrap().selector.clone()
}

/// Log lines (JSON) written while `f` runs.
async fn logged<F: std::future::Future>(f: F) -> (F::Output, Vec<serde_json::Value>) {
    #[derive(Clone)]
    struct Sink(Arc<Mutex<Vec<u8>>>);
    impl std::io::Write for Sink {
        fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(bytes);
            Ok(bytes.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let buffer = Arc::new(Mutex::new(Vec::new()));
    let sink = Sink(buffer.clone());
    let subscriber = tracing_subscriber::fmt()
        .json()
        .flatten_event(true)
        .with_writer(move || sink.clone())
        .finish();
    let _guard = tracing::subscriber::set_default(subscriber);
    let out = f.await;
    let text = String::from_utf8(buffer.lock().unwrap().clone()).unwrap();
    let lines = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    (out, lines)
}

#[tokio::test(flavor = "current_thread")]
async fn the_new_key_signs_after_three_matching_checks_with_one_audit_line() {
    let scratch = Scratch::new("switch");
    let keys = rotation_keys(scratch.new_key("new.pem"));
    let old_only = dns(&keys, &[("old", 0)]);
    choose_at_startup(&keys, Some(&old_only), false)
        .await
        .unwrap();
    assert_eq!(signer(&keys), "old");
    let hour = Duration::from_secs(3600);
    // While the new key waits, the check runs at the rotation's pace.
    assert_eq!(
        check_round(&keys, &old_only, hour).await,
        Duration::from_secs(1)
    );
    assert_eq!(signer(&keys), "old");

    let both = dns(&keys, &[("old", 0), ("new", 1)]);
    let ((), lines) = logged(async {
        check_round(&keys, &both, hour).await;
        check_round(&keys, &both, hour).await;
        assert_eq!(signer(&keys), "old", "two checks are not three");
        assert_eq!(keys.sets()[0].confirmations(1), 2);
        // The third: the next transaction signs with the new key.
        assert_eq!(check_round(&keys, &both, hour).await, hour);
        assert_eq!(signer(&keys), "new");
        check_round(&keys, &both, hour).await;
    })
    .await;
    let audits: Vec<_> = lines.iter().filter(|l| l["audit"] == "dkim").collect();
    assert_eq!(audits.len(), 1, "{lines:#?}");
    assert_eq!(audits[0]["domain"], DOMAIN);
    assert_eq!(audits[0]["old_selector"], "old");
    assert_eq!(audits[0]["new_selector"], "new");
    assert_eq!(audits[0]["confirmations"], 3);

    // The new record disappears: no way back by itself.
    for _ in 0..5 {
        check_round(&keys, &old_only, hour).await;
    }
    assert_eq!(signer(&keys), "new");
}

#[tokio::test(flavor = "current_thread")]
async fn a_new_record_with_the_wrong_key_is_never_used() {
    let scratch = Scratch::new("wrong");
    let keys = rotation_keys(scratch.new_key("new.pem"));
    // The new selector's name carries another key: the old one's.
    let wrong = dns(&keys, &[("old", 0), ("new", 0)]);
    choose_at_startup(&keys, Some(&wrong), false).await.unwrap();
    for _ in 0..10 {
        check_round(&keys, &wrong, Duration::from_secs(60)).await;
    }
    assert_eq!(signer(&keys), "old");
    assert_eq!(keys.sets()[0].confirmations(1), 0);
    assert!(keys.sets()[0].pending());
}

#[tokio::test(flavor = "current_thread")]
async fn startup_takes_the_newest_published_key_or_the_first_or_refuses() {
    let scratch = Scratch::new("startup");
    let keys = rotation_keys(scratch.new_key("new.pem"));
    let both = dns(&keys, &[("old", 0), ("new", 1)]);
    choose_at_startup(&keys, Some(&both), false).await.unwrap();
    assert_eq!(signer(&keys), "new");

    let keys = rotation_keys(scratch.0.join("new.pem"));
    let none = StaticResolver::default();
    choose_at_startup(&keys, Some(&none), false).await.unwrap();
    assert_eq!(
        signer(&keys),
        "old",
        "no record: the first key, with a warning"
    );
    let err = choose_at_startup(&keys, Some(&none), true)
        .await
        .unwrap_err()
        .to_string();
    assert!(err.contains("require-published"), "{err}");
    assert!(err.contains(DOMAIN), "{err}");
}

#[test]
fn key_age_comes_from_created_else_from_the_file_mtime() {
    let scratch = Scratch::new("age");
    let path = scratch.new_key("k.pem");
    let ten_days_ago = SystemTime::now() - Duration::from_secs(10 * 86_400);
    std::fs::File::options()
        .write(true)
        .open(&path)
        .unwrap()
        .set_modified(ten_days_ago)
        .unwrap();
    let mut dated = entry("dated", path.clone());
    dated.created = Some(KeyDate::parse("2025-09-12").unwrap());
    let config = DkimConfig {
        keys: vec![dated, entry("undated", path)],
        ..DkimConfig::default()
    };
    let keys = DkimKeys::load(&config).unwrap();
    assert_eq!(
        keys.keys()[0]
            .created
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_secs(),
        1_757_635_200
    );
    let age = keys.keys()[1].age().as_secs();
    assert!((10 * 86_400..10 * 86_400 + 60).contains(&age), "{age}");
}

#[tokio::test(flavor = "current_thread")]
async fn a_reload_keeps_the_switched_key_and_a_new_config_adds_a_pending_one() {
    let scratch = Scratch::new("reload");
    let new_key = scratch.new_key("new.pem");
    let keys = rotation_keys(new_key.clone());
    let both = dns(&keys, &[("old", 0), ("new", 1)]);
    for _ in 0..3 {
        check_round(&keys, &both, Duration::from_secs(60)).await;
    }
    assert_eq!(signer(&keys), "new");
    // The same two keys plus a third, newer one: "new" still signs, the third waits.
    let config = DkimConfig {
        keys: vec![
            entry("old", demo_key()),
            entry("new", new_key),
            entry("newest", scratch.new_key("newest.pem")),
        ],
        ..DkimConfig::default()
    };
    let reloaded = DkimKeys::load(&config).unwrap();
    assert_eq!(signer(&reloaded), "old", "before carrying over");
    reloaded.carry_over(&keys);
    assert_eq!(signer(&reloaded), "new");
    assert_eq!(reloaded.sets()[0].confirmations(1), 3);
    assert!(reloaded.sets()[0].is_pending(2));
}

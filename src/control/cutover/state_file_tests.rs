//! What a restart starts from when the state file is there but unreadable:
//! an error naming the file, never the config's percentage, which would undo
//! the operator's last setting.

use std::path::PathBuf;

use super::{Cutover, CutoverError, Record, Source};

/// A scratch path `<tmp>/ses-relay-cutover-<name>-<pid>/state/cutover.json`, nothing created.
fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("ses-relay-cutover-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    dir.join("state").join("cutover.json")
}

fn remove(path: &std::path::Path) {
    std::fs::remove_dir_all(path.parent().unwrap().parent().unwrap()).ok();
}

#[test]
fn a_directory_where_the_state_file_should_be_is_an_error_naming_it() {
    // Unreadable as a file, also when the tests run as root.
    let path = scratch("unreadable-dir");
    std::fs::create_dir_all(&path).unwrap();
    let err = Cutover::load(&path, 10.0)
        .err()
        .expect("a directory is not a state file");
    assert!(matches!(err, CutoverError::Corrupt { .. }), "{err:?}");
    assert!(
        err.to_string()
            .starts_with(&format!("cutover.state-file {}: ", path.display())),
        "{err}"
    );
    remove(&path);
}

#[test]
fn a_state_file_that_is_not_utf8_is_an_error_naming_it() {
    let path = scratch("unreadable-bytes");
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(&path, b"{\"ses_percent\": 50.0, \"reason\": \"\xff\xfe\"}").unwrap();
    let err = Cutover::load(&path, 10.0).err().expect("not UTF-8");
    assert!(matches!(err, CutoverError::Corrupt { .. }), "{err:?}");
    assert!(
        err.to_string().contains(&path.display().to_string()),
        "{err}"
    );
    remove(&path);
}

#[test]
fn only_a_missing_state_file_starts_from_the_config() {
    let path = scratch("missing");
    let status = Cutover::load(&path, 10.0).unwrap().status();
    assert_eq!((status.ses_percent, status.source), (10.0, Source::Config));
}

#[tokio::test]
async fn the_shared_stores_cache_is_what_a_restart_reads() {
    let path = scratch("cache");
    let record = Record {
        change_id: "c1".into(),
        updated_at: "2026-12-01T00:00:00.000Z".into(),
        updated_by: "relay-a".into(),
        ..Record::from_json(r#"{"ses_percent": 40}"#).unwrap()
    };
    super::store::cache_to(&path, &record, Some(7)).await;
    let saved = super::store::read_state(&path).unwrap().expect("cached");
    assert_eq!(saved.ses_percent.as_f64(), 40.0);
    assert_eq!(
        (saved.version, saved.change_id.as_deref()),
        (Some(7), Some("c1"))
    );
    assert_eq!(saved.updated_by.as_deref(), Some("relay-a"));
    remove(&path);
}

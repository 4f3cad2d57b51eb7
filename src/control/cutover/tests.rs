//! The cutover's entry point against the file store and a scripted shared
//! store: what is applied, when, and what is reported.

use std::collections::VecDeque;
use std::sync::Mutex as StdMutex;

use super::store::{Observed, StoreFuture, WriteError};
use super::*;
use crate::message::route::{Router, Share};

fn temp(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("ses-relay-cutover-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    dir.join("state").join("cutover.json")
}

fn pct(value: f64) -> Percent {
    Percent::new(value).unwrap()
}

fn operator(value: f64, reason: &str) -> Change {
    Change {
        percent: pct(value),
        reason: reason.into(),
        by: Source::Api,
    }
}

fn guard(value: f64, reason: &str) -> Change {
    Change {
        percent: pct(value),
        reason: reason.into(),
        by: Source::Guard,
    }
}

fn router(cutover: &Cutover) -> Router {
    Router::new(true, Vec::new(), cutover.share())
}

#[tokio::test]
async fn state_file_round_trip_and_it_wins_at_startup() {
    let path = temp("roundtrip");
    let cutover = Cutover::load(&path, 10.0).unwrap();
    let router = router(&cutover);
    assert_eq!(cutover.status().source, Source::Config);
    let status = cutover.change(operator(50.0, "week 2")).await.unwrap();
    assert_eq!(
        router.ses_percent(),
        50.0,
        "the router reads the cutover's share"
    );
    assert_eq!(status.source, Source::StateFile);
    assert_eq!(status.ses_percent, router.ses_percent());
    // A restart with the config still saying 10 keeps 50.
    let restarted = Cutover::load(&path, 10.0).unwrap();
    let status = restarted.status();
    assert_eq!(
        (status.ses_percent, status.source),
        (50.0, Source::StateFile)
    );
    assert_eq!(status.reason.as_deref(), Some("week 2"));
    assert!(!path.with_file_name(".cutover.json.tmp").exists());
    std::fs::remove_dir_all(path.parent().unwrap().parent().unwrap()).ok();
}

#[test]
fn sources_are_spelled_as_the_api_spells_them() {
    for source in [
        Source::Config,
        Source::StateFile,
        Source::Guard,
        Source::Api,
    ] {
        let json = serde_json::to_string(&source).unwrap();
        assert_eq!(json, format!("\"{source}\""));
    }
}

#[tokio::test]
async fn a_guard_change_is_in_force_at_once_and_keeps_its_source_across_a_restart() {
    let path = temp("guard");
    let cutover = Cutover::load(&path, 50.0).unwrap();
    let router = router(&cutover);
    let reason = "guard: failure ratio 0.31 > 0.05 over 5m (62 of 200)";
    let writing = cutover.change(guard(0.0, reason));
    // In force before the write is even polled.
    assert_eq!(router.ses_percent(), 0.0);
    assert_eq!(cutover.status().source, Source::Guard);
    let changes = cutover.operator_changes();
    writing.await.unwrap();
    assert_eq!(
        *changes.borrow(),
        0,
        "the guard's own change does not re-arm it"
    );
    let status = Cutover::load(&path, 50.0).unwrap().status();
    assert_eq!((status.ses_percent, status.source), (0.0, Source::Guard));
    assert_eq!(status.reason.as_deref(), Some(reason));
    // An operator's change afterwards is the operator's again, and counted.
    cutover.change(operator(10.0, "re-armed")).await.unwrap();
    assert_eq!(*changes.borrow(), 1);
    let status = Cutover::load(&path, 50.0).unwrap().status();
    assert_eq!(status.source, Source::StateFile);
    std::fs::remove_dir_all(path.parent().unwrap().parent().unwrap()).ok();
}

#[test]
fn a_configured_value_goes_through_the_one_validation() {
    for bad in [101.0, -1.0, f64::NAN, 12.345, 0.001, -0.0, 1e-320] {
        assert!(
            matches!(
                Cutover::load(Path::new(""), bad),
                Err(CutoverError::Percent(_))
            ),
            "{bad}"
        );
    }
}

#[test]
fn a_state_file_value_goes_through_the_one_validation() {
    for bad in ["12.345", "1e-320", "-0.0", "\"50\"", "101"] {
        let path = temp(&format!("bad-{}", bad.len()));
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(
            &path,
            format!(
                r#"{{"ses_percent": {bad}, "updated_at": "2026-12-01T00:00:00Z", "reason": "x"}}"#
            ),
        )
        .unwrap();
        let err = Cutover::load(&path, 10.0).err().expect(bad);
        assert!(
            matches!(err, CutoverError::Corrupt { .. }),
            "{bad}: {err:?}"
        );
        std::fs::remove_dir_all(path.parent().unwrap().parent().unwrap()).ok();
    }
}

#[test]
fn corrupt_state_file_is_an_error_naming_it() {
    let path = temp("corrupt");
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(&path, "{not json").unwrap();
    let err = Cutover::load(&path, 10.0).err().unwrap().to_string();
    assert!(err.contains(&path.display().to_string()), "{err}");
    std::fs::remove_dir_all(path.parent().unwrap().parent().unwrap()).ok();
}

#[tokio::test]
async fn unwritable_state_file_refuses_the_change() {
    let path = PathBuf::from("/proc/ses-relay-cannot-write/cutover.json");
    let cutover = Cutover::load(&path, 10.0).unwrap();
    let router = router(&cutover);
    let err = cutover.change(operator(50.0, "x")).await.unwrap_err();
    assert!(matches!(err, CutoverError::NotApplied(_)), "{err:?}");
    assert_eq!(err.applied(), serde_json::json!(false));
    assert_eq!(router.ses_percent(), 10.0);
    assert_eq!(cutover.status().ses_percent, 10.0);
}

/// What the scripted store answers to a write.
#[derive(Debug, Clone, Copy)]
enum Answer {
    /// Takes it.
    Take,
    /// Takes it but the answer is lost.
    TakeSilently,
    /// Refuses it.
    Refuse,
    /// Never receives it, and no answer comes.
    Lose,
}

/// A shared store whose write answers follow a script (then `Take`).
struct Scripted {
    held: StdMutex<Option<Observed>>,
    script: StdMutex<VecDeque<Answer>>,
    writes: StdMutex<Vec<Record>>,
    /// What was kept for the next start: (change id, version).
    cached: StdMutex<Vec<(String, Option<i64>)>>,
}

impl Scripted {
    fn new(script: &[Answer]) -> Arc<Scripted> {
        Arc::new(Scripted {
            held: StdMutex::new(None),
            script: StdMutex::new(script.iter().copied().collect()),
            writes: StdMutex::new(Vec::new()),
            cached: StdMutex::new(Vec::new()),
        })
    }

    fn held(&self) -> Option<Observed> {
        self.held.lock().unwrap().clone()
    }

    fn take(&self, record: &Record) -> i64 {
        let mut held = self.held.lock().unwrap();
        let version = held.as_ref().map_or(1, |h| h.version + 1);
        *held = Some(Observed {
            record: record.clone(),
            version,
        });
        version
    }

    /// Another writer (an operator by hand, another relay).
    fn put(&self, record: Record, version: i64) {
        *self.held.lock().unwrap() = Some(Observed { record, version });
    }
}

fn lost() -> Box<dyn std::error::Error + Send + Sync> {
    "no answer".into()
}

impl Store for Arc<Scripted> {
    fn kind(&self) -> CutoverStore {
        CutoverStore::Ssm
    }

    fn write<'a>(&'a self, record: &'a Record) -> StoreFuture<'a, Result<Option<i64>, WriteError>> {
        Box::pin(async move {
            self.writes.lock().unwrap().push(record.clone());
            let answer = self
                .script
                .lock()
                .unwrap()
                .pop_front()
                .unwrap_or(Answer::Take);
            match answer {
                Answer::Take => Ok(Some(self.take(record))),
                Answer::TakeSilently => {
                    self.take(record);
                    Err(WriteError::Unknown(lost()))
                }
                Answer::Refuse => Err(WriteError::NotApplied("AccessDenied".into())),
                Answer::Lose => Err(WriteError::Unknown(lost())),
            }
        })
    }

    fn read(&self) -> StoreFuture<'_, Result<Option<Observed>, StoreError>> {
        Box::pin(async move { Ok(self.held()) })
    }

    fn cache<'a>(&'a self, record: &'a Record, version: Option<i64>) -> StoreFuture<'a, ()> {
        self.cached
            .lock()
            .unwrap()
            .push((record.change_id.clone(), version));
        Box::pin(async {})
    }

    fn refresh_interval(&self) -> Option<Duration> {
        Some(Duration::from_secs(1))
    }
}

fn shared(store: &Arc<Scripted>, percent: f64) -> Cutover {
    let record = Record {
        change_id: "initial".into(),
        updated_at: "2026-12-01T00:00:00.000Z".into(),
        source: Source::Config,
        ..Record::configured(pct(percent))
    };
    store.put(record.clone(), 1);
    Cutover::with(Box::new(store.clone()), "relay-a".into(), record, Some(1))
}

fn hand_written(percent: f64, updated_at: &str, change_id: &str) -> Record {
    Record {
        ses_percent: pct(percent),
        reason: "by hand".into(),
        updated_at: updated_at.into(),
        updated_by: String::new(),
        source: Source::Api,
        change_id: change_id.into(),
    }
}

#[tokio::test]
async fn a_write_the_store_refused_changes_nothing_and_says_so() {
    let store = Scripted::new(&[Answer::Refuse]);
    let cutover = shared(&store, 100.0);
    let err = cutover.change(operator(70.0, "x")).await.unwrap_err();
    assert_eq!(err.applied(), serde_json::json!(false));
    assert_eq!(cutover.status().ses_percent, 100.0);
    assert_eq!(
        store.held().unwrap().version,
        1,
        "the store holds what it held"
    );
    assert_eq!(
        store.writes.lock().unwrap().len(),
        1,
        "sent once, never again"
    );
}

#[tokio::test(start_paused = true)]
async fn a_write_without_an_answer_is_unknown_then_resolved_by_reading() {
    let store = Scripted::new(&[Answer::TakeSilently]);
    let cutover = shared(&store, 100.0);
    let err = cutover.change(operator(70.0, "x")).await.unwrap_err();
    assert_eq!(err.applied(), serde_json::json!("unknown"));
    assert!(err.to_string().contains("unknown"), "{err}");
    assert_eq!(
        cutover.status().ses_percent,
        100.0,
        "nothing here until known"
    );
    // The relay reads until it knows: the store took it, so it is put in force.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let status = cutover.status();
    assert_eq!((status.ses_percent, status.version), (70.0, Some(2)));
    assert_eq!(store.writes.lock().unwrap().len(), 1, "never sent twice");
}

#[tokio::test(start_paused = true)]
async fn the_guards_write_is_repeated_with_the_same_id_until_the_store_has_it() {
    let store = Scripted::new(&[Answer::Lose, Answer::Refuse, Answer::Lose]);
    let cutover = shared(&store, 50.0);
    let writing = tokio::spawn(cutover.change(guard(0.0, "guard: trip")));
    assert_eq!(cutover.status().ses_percent, 0.0, "in force here at once");
    assert!(cutover.status().pending_write);
    // A refresh meanwhile reads the older value: it does not undo the trip.
    assert!(!cutover.refresh().await);
    assert_eq!(cutover.status().ses_percent, 0.0);
    writing.await.unwrap().unwrap();
    let writes = store.writes.lock().unwrap().clone();
    assert_eq!(writes.len(), 4);
    assert!(writes.iter().all(|w| w.change_id == writes[0].change_id));
    let status = cutover.status();
    assert_eq!((status.version, status.pending_write), (Some(2), false));
    assert_eq!(store.held().unwrap().record.ses_percent, Percent::ZERO);
}

#[tokio::test]
async fn a_recreated_parameter_is_followed_and_an_older_copy_is_not() {
    let store = Scripted::new(&[]);
    let cutover = shared(&store, 100.0);
    let changes = cutover.operator_changes();
    cutover.change(operator(80.0, "step")).await.unwrap();
    cutover.change(operator(90.0, "step")).await.unwrap();
    assert_eq!(cutover.status().version, Some(3));
    // Deleted and re-created by hand: version 1 again, a newer value.
    store.put(hand_written(0.0, "2099-01-01T00:00:00Z", "ssm-v1@x"), 1);
    assert!(cutover.refresh().await);
    let status = cutover.status();
    assert_eq!((status.ses_percent, status.version), (0.0, Some(1)));
    assert_eq!(
        *changes.borrow(),
        3,
        "a rollback by hand is an operator's change"
    );
    // Later changes follow from version 1 on.
    store.put(hand_written(5.0, "2099-01-01T00:00:01Z", "ssm-v2@x"), 2);
    assert!(cutover.refresh().await);
    assert_eq!(cutover.status().ses_percent, 5.0);
    // Re-created again from an old copy: kept out.
    store.put(hand_written(100.0, "2020-01-01T00:00:00Z", "ssm-v1@old"), 1);
    assert!(!cutover.refresh().await);
    assert_eq!(cutover.status().ses_percent, 5.0);
}

#[tokio::test]
async fn what_is_shown_is_what_routes() {
    let store = Scripted::new(&[]);
    let cutover = shared(&store, 100.0);
    let router = router(&cutover);
    for percent in [12.34, 0.0, 99.99, 50.0] {
        let status = cutover.change(operator(percent, "x")).await.unwrap();
        assert_eq!(status.ses_percent, router.ses_percent());
        assert_eq!(cutover.status().ses_percent, percent);
    }
    store.put(hand_written(7.5, "2099-01-01T00:00:00Z", "other"), 10);
    cutover.refresh().await;
    assert_eq!(router.ses_percent(), 7.5);
    assert_eq!(cutover.status().ses_percent, 7.5);
    let _ = Share::fixed(Percent::ALL);
}

#[test]
fn millis_read_what_the_relay_and_people_write() {
    assert_eq!(millis_of("1970-01-01T00:00:01.500Z"), 1500);
    assert_eq!(millis_of("1970-01-01T00:00:02Z"), 2000);
    assert_eq!(millis_of("not a time"), 0);
    assert_eq!(millis_of(""), 0);
}

#[tokio::test]
async fn the_file_store_is_never_refreshed_and_names_no_writer() {
    let path = temp("never-refreshed");
    let cutover = Cutover::load(&path, 10.0).unwrap();
    assert_eq!(cutover.refresh_interval(), None);
    let status = cutover.change(operator(20.0, "step")).await.unwrap();
    assert_eq!(
        status.updated_by, None,
        "the file store's changes carry no host"
    );
    assert!(status.change_id.is_some());
    std::fs::remove_dir_all(path.parent().unwrap().parent().unwrap()).ok();
}

#[tokio::test]
async fn what_is_in_force_is_cached_for_the_next_start() {
    let store = Scripted::new(&[]);
    let cutover = shared(&store, 100.0);
    assert_eq!(cutover.refresh_interval(), Some(Duration::from_secs(1)));
    let status = cutover.change(operator(70.0, "step")).await.unwrap();
    assert_eq!(status.updated_by.as_deref(), Some("relay-a"));
    let id = status.change_id.unwrap();
    let deadline = Instant::now() + Duration::from_secs(5);
    while !store
        .cached
        .lock()
        .unwrap()
        .contains(&(id.clone(), Some(2)))
    {
        assert!(Instant::now() < deadline, "never cached");
        tokio::task::yield_now().await;
    }
}

#[tokio::test]
async fn open_takes_the_store_the_config_names() {
    let mut config = crate::config::Config::default();
    config.cutover.ses_percent = Some(30.0);
    config.cutover.state_file = PathBuf::new();
    let file = Cutover::open(&config, None).await.unwrap();
    assert_eq!(file.status().store, CutoverStore::File);
    config.cutover.store = CutoverStore::Ssm;
    config.cutover.ssm_parameter = "/ses-relay/test".into();
    config.cutover.endpoint_url = "http://127.0.0.1:9".into();
    config.ses.region = "ap-northeast-1".into();
    let credentials = aws_credential_types::provider::SharedCredentialsProvider::new(
        aws_credential_types::Credentials::new("AKID", "secret", None, None, "test"),
    );
    let ssm = Cutover::open(&config, Some(credentials)).await.unwrap();
    let status = ssm.status();
    assert_eq!(
        (status.store, status.ses_percent),
        (CutoverStore::Ssm, 30.0),
        "SSM unreachable and nothing cached: the config's value"
    );
}

#[tokio::test(start_paused = true)]
async fn the_guards_write_backs_off_while_the_store_does_not_answer() {
    let store = Scripted::new(&[Answer::Lose, Answer::Lose, Answer::Lose]);
    let cutover = shared(&store, 50.0);
    let started = tokio::time::Instant::now();
    cutover.change(guard(0.0, "guard: trip")).await.unwrap();
    assert_eq!(store.writes.lock().unwrap().len(), 4);
    // 0.5 s, 1 s, 2 s between the four writes.
    let waited = started.elapsed();
    assert!(waited >= Duration::from_millis(3_500), "{waited:?}");
}

#[tokio::test]
async fn the_change_in_force_read_at_a_new_version_records_that_version() {
    let store = Scripted::new(&[]);
    let cutover = shared(&store, 100.0);
    let held = store.held().unwrap().record;
    store.put(held, 3);
    assert!(!cutover.refresh().await, "the same change");
    assert_eq!(cutover.status().version, Some(3));
}

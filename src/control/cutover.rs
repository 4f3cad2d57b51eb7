//! The cutover: the one owner of the SES share. It publishes the share the
//! router reads ([`Cutover::share`]), shows it (`GET /cutover`, the CLI, the
//! metric, the status page: [`Cutover::status`]), and takes every change
//! through one entry point, [`Cutover::change`], carrying the percentage,
//! the reason and who made it (config, operator, guard).
//!
//! Where the value is kept is a `store::Store` (`cutover.store`):
//!
//! - `file` (one relay): `cutover.state-file`, written atomically off the
//!   async workers; it wins over the config value at startup so a restart
//!   keeps the operators' last word;
//! - `ssm` (a fleet): one SSM parameter ([`ssm`]) every relay reads every
//!   `refresh-interval`; the state file then caches the last value seen, for
//!   a start while SSM is unreachable. `order` says which value wins.
//!
//! An operator's change is written to the store first and put in force once
//! the store has it; if the write's outcome is unknown (SSM did not answer),
//! nothing changes here, the caller is told so, and the relay reads SSM until
//! it knows. The guard's trip is put in force here at once, then written,
//! again until the store has it. Every change of the value in force ends in
//! one audit log line.

mod apply;
mod audit;
mod open;
mod order;
pub mod ssm;
mod store;

use std::future::Future;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};
use tokio::sync::watch;

use self::store::{FileStore, Store};
use crate::config::CutoverStore;
use crate::message::route::{Percent, PercentError, Share, ShareWriter};
pub use ssm::{SsmStore, StoreError};
pub use store::SavedState;

/// Store errors and refused values are logged at most this often (each one is counted).
const ERROR_LOG_INTERVAL: Duration = Duration::from_secs(60);

/// Who made a change, or where the value in force came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Source {
    /// `cutover.ses-percent` in the config file (or its default); with the SSM
    /// store, the relay that created the parameter from it.
    Config,
    /// An operator's change kept in the state file (file store).
    StateFile,
    /// The rollback guard lowered it (see `crate::control::guard`).
    Guard,
    /// An operator through `PUT /cutover`, `ses-relay cutover set`, or by
    /// hand in the SSM parameter.
    Api,
}

impl Source {
    /// Whether an operator made the change (it re-arms the guard).
    pub fn is_operator(self) -> bool {
        matches!(self, Source::Api | Source::StateFile)
    }
}

impl std::fmt::Display for Source {
    /// As `GET /cutover` spells it, so the audit log and the API agree.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Source::Config => "config",
            Source::StateFile => "state-file",
            Source::Guard => "guard",
            Source::Api => "api",
        })
    }
}

fn default_source() -> Source {
    Source::Api
}

/// One change as a store keeps it (the SSM parameter's JSON value).
///
/// Only `ses_percent` is required, so a value written by hand with
/// `aws ssm put-parameter` is taken: it counts as an operator's, made when
/// SSM says it was, with an id of its own.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Record {
    /// SES share, 0 to 100 in steps of 0.01 (validated when read).
    pub ses_percent: Percent,
    /// Why, as the operator (or the guard) said.
    #[serde(default)]
    pub reason: String,
    /// RFC 3339 time of the change, in milliseconds.
    #[serde(default)]
    pub updated_at: String,
    /// Host name of the relay that made it.
    #[serde(default)]
    pub updated_by: String,
    /// Who made the change: `api`, `guard` or `config`.
    #[serde(default = "default_source")]
    pub source: Source,
    /// The change's unique id: a relay applies a value whose id differs from
    /// the one in force, whatever its version.
    #[serde(default)]
    pub change_id: String,
}

/// A change asked for: the one way in ([`Cutover::change`]).
#[derive(Debug, Clone, PartialEq)]
pub struct Change {
    /// The new SES share.
    pub percent: Percent,
    /// Why (the audit line and `GET /cutover` show it).
    pub reason: String,
    /// Who asks: [`Source::Api`] for an operator, [`Source::Guard`], or
    /// [`Source::Config`].
    pub by: Source,
}

/// The percentage in force and its provenance (`GET /cutover`).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Status {
    /// SES share applied to new transactions: exactly what the router uses.
    pub ses_percent: f64,
    /// `config` or `state-file` (file store); `api`, `guard` or `config` (SSM store: who wrote it).
    pub source: Source,
    /// When it was last changed at runtime, if ever.
    pub updated_at: Option<String>,
    /// The reason given with that change.
    pub reason: Option<String>,
    /// `file` or `ssm`.
    pub store: CutoverStore,
    /// SSM parameter version in force (SSM store).
    pub version: Option<i64>,
    /// When the parameter was last read from SSM (SSM store; `None` until the first read).
    pub refreshed_at: Option<String>,
    /// Host name of the relay that made the change.
    pub updated_by: Option<String>,
    /// The change's unique id.
    pub change_id: Option<String>,
    /// The change is in force here but not yet in the shared store (a guard
    /// trip being written).
    pub pending_write: bool,
}

/// Why a cutover change or load failed.
#[derive(Debug, thiserror::Error)]
pub enum CutoverError {
    /// Not an SES percentage the router can apply.
    #[error(transparent)]
    Percent(#[from] PercentError),
    /// The state file exists but cannot be read or parsed.
    #[error("cutover.state-file {path}: {reason}")]
    Corrupt {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// The store certainly did not take the change; nothing changed anywhere.
    #[error("{0}; the change was not applied")]
    NotApplied(#[source] Box<dyn std::error::Error + Send + Sync>),
    /// The store may or may not have taken the change: nothing changed here
    /// yet, and the relay reads the store until it knows.
    #[error(
        "{0}; whether the change was applied is unknown: the relay reads the store until it knows"
    )]
    Unknown(#[source] Box<dyn std::error::Error + Send + Sync>),
}

impl CutoverError {
    /// `false` (certainly not applied), `"unknown"`, for `PUT /cutover`'s `applied`.
    pub fn applied(&self) -> serde_json::Value {
        match self {
            CutoverError::Unknown(_) => serde_json::Value::from("unknown"),
            _ => serde_json::Value::from(false),
        }
    }
}

/// What is in force, beside its [`Status`].
struct State {
    status: Status,
    /// When the change in force was made (ms since the epoch), for ordering.
    written_at: i64,
    /// When a refused or older store value was last logged.
    last_refusal_log: Option<Instant>,
    /// When a store error was last logged (`Some` while the store is failing).
    last_error_log: Option<Instant>,
}

struct Inner {
    store: Box<dyn Store>,
    share: ShareWriter,
    state: Mutex<State>,
    /// One write at a time: a store's write and the local apply stay in order.
    writing: tokio::sync::Mutex<()>,
    /// `updated_by` of this relay's changes.
    hostname: String,
    /// Counts operators' changes put in force (the guard re-arms on each).
    operator_changes: watch::Sender<u64>,
}

/// The cutover: cheap to clone, every clone the same one.
#[derive(Clone)]
pub struct Cutover {
    inner: Arc<Inner>,
}

impl Cutover {
    /// The file store's cutover at startup: the state file if there is one,
    /// else `configured` (from the config file).
    pub fn load(state_file: &Path, configured: f64) -> Result<Cutover, CutoverError> {
        let configured = Percent::new(configured)?;
        let store = FileStore::new(state_file);
        let (record, version) = match store.load()? {
            Some(saved) => (saved.record(), None),
            None => (Record::configured(configured), None),
        };
        Ok(Cutover::with(
            Box::new(store),
            String::new(),
            record,
            version,
        ))
    }

    fn with(
        store: Box<dyn Store>,
        hostname: String,
        record: Record,
        version: Option<i64>,
    ) -> Cutover {
        let status = Status::of(&record, store.kind(), version);
        let share = ShareWriter::new(record.ses_percent);
        crate::metrics::cutover_percent(record.ses_percent.as_f64());
        if let Some(version) = version {
            crate::metrics::cutover_store_version(version);
        }
        Cutover {
            inner: Arc::new(Inner {
                store,
                share,
                state: Mutex::new(State {
                    written_at: millis_of(&record.updated_at),
                    status,
                    last_refusal_log: None,
                    last_error_log: None,
                }),
                writing: tokio::sync::Mutex::new(()),
                hostname,
                operator_changes: watch::Sender::new(0),
            }),
        }
    }

    /// The status now: what routes.
    pub fn status(&self) -> Status {
        self.lock().status.clone()
    }

    /// The share the router reads.
    pub fn share(&self) -> Share {
        self.inner.share.reader()
    }

    /// How often the shared store is read for other relays' changes (`None`: never, file store).
    pub fn refresh_interval(&self) -> Option<Duration> {
        self.inner.store.refresh_interval()
    }

    /// Operators' changes put in force so far: the guard re-arms when it moves.
    pub fn operator_changes(&self) -> watch::Receiver<u64> {
        self.inner.operator_changes.subscribe()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.inner.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The one way in. An operator's change (and the config's) is written to
    /// the store first and put in force once the store has it: the future
    /// answers with the status then in force, [`CutoverError::NotApplied`]
    /// (nothing changed anywhere) or [`CutoverError::Unknown`] (nothing
    /// changed here yet; the relay reads the store until it knows, and logs
    /// an audit line for whatever is then in force).
    ///
    /// The guard's change is put in force before this returns, and the
    /// future writes it, again and again while the store's answer is unknown
    /// or a refusal, until the store has it or a newer change replaced it.
    pub fn change(
        &self,
        change: Change,
    ) -> impl Future<Output = Result<Status, CutoverError>> + Send + 'static {
        let this = self.clone();
        let kind = self.inner.store.kind();
        // The file store shows an operator's change as `state-file`, as it always has.
        let by = match (change.by, kind) {
            (Source::Api | Source::StateFile, CutoverStore::File) => Source::StateFile,
            (Source::StateFile, CutoverStore::Ssm) => Source::Api,
            (by, _) => by,
        };
        let record = self.record(change.percent, &change.reason, by);
        let early = (by == Source::Guard).then(|| {
            let mut state = self.lock();
            let version = state.status.version;
            self.install(
                &mut state,
                &record,
                version,
                kind == CutoverStore::Ssm,
                "set",
            );
        });
        async move {
            match early {
                Some(()) => this.write_until_known(record).await,
                None => this.write_then_apply(record).await,
            }
        }
    }
    /// A new change of this relay's.
    fn record(&self, percent: Percent, reason: &str, source: Source) -> Record {
        Record::new(percent, reason, source, &self.inner.hostname)
    }
}

/// Why JSON text is not the object asked for.
#[derive(Debug, thiserror::Error)]
pub enum ObjectError {
    /// Not JSON at all.
    #[error("not JSON: {0}")]
    NotJson(#[source] serde_json::Error),
    /// JSON, but not an object (an array would fill the fields in order).
    #[error("not a JSON object")]
    NotAnObject,
    /// An object whose fields are wrong (a percentage refused, a field missing or unknown).
    #[error("{0}")]
    Fields(#[source] serde_json::Error),
}

/// `T` from JSON text that must be an object: serde would fill a struct
/// from an array (`[10, "x"]`) field by field, which nobody means. The one
/// reader of every cutover value from outside (the SSM parameter, `PUT
/// /cutover`'s body).
pub fn json_object<T: serde::de::DeserializeOwned>(text: &[u8]) -> Result<T, ObjectError> {
    let value: serde_json::Value = serde_json::from_slice(text).map_err(ObjectError::NotJson)?;
    if !value.is_object() {
        return Err(ObjectError::NotAnObject);
    }
    serde_json::from_value(value).map_err(ObjectError::Fields)
}

/// Makes change ids unique within the process (several cutovers in tests).
static SEQUENCE: AtomicU64 = AtomicU64::new(0);

impl Record {
    /// A new change made by `hostname`: a unique id, the time in milliseconds.
    fn new(percent: Percent, reason: &str, source: Source, hostname: &str) -> Record {
        let now = SystemTime::now();
        let nanos = now
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default()
            .as_nanos();
        let sequence = SEQUENCE.fetch_add(1, Ordering::Relaxed);
        let seed = format!("{nanos}/{}/{sequence}/{hostname}", std::process::id());
        Record {
            ses_percent: percent,
            reason: reason.to_string(),
            updated_at: humantime::format_rfc3339_millis(now).to_string(),
            updated_by: hostname.to_string(),
            source,
            change_id: format!(
                "{:x}-{:016x}",
                nanos / 1_000_000,
                xxhash_rust::xxh3::xxh3_64(seed.as_bytes())
            ),
        }
    }

    /// A record from its JSON text: an object with a valid `ses_percent`.
    pub fn from_json(text: &str) -> Result<Record, ObjectError> {
        json_object(text.as_bytes())
    }

    /// The config's value, as a record (no change was made at runtime).
    fn configured(percent: Percent) -> Record {
        Record {
            ses_percent: percent,
            reason: String::new(),
            updated_at: String::new(),
            updated_by: String::new(),
            source: Source::Config,
            change_id: String::new(),
        }
    }
}

impl Status {
    fn of(record: &Record, store: CutoverStore, version: Option<i64>) -> Status {
        let runtime = !record.updated_at.is_empty();
        Status {
            ses_percent: record.ses_percent.as_f64(),
            source: record.source,
            updated_at: Some(record.updated_at.clone()).filter(|_| runtime),
            reason: Some(record.reason.clone()).filter(|_| runtime),
            store,
            version,
            refreshed_at: None,
            updated_by: Some(record.updated_by.clone()).filter(|b| !b.is_empty()),
            change_id: Some(record.change_id.clone()).filter(|c| !c.is_empty()),
            pending_write: false,
        }
    }
}

/// An RFC 3339 time in milliseconds since the epoch (0 when it is not one).
fn millis_of(rfc3339: &str) -> i64 {
    humantime::parse_rfc3339_weak(rfc3339.trim_end_matches('Z'))
        .ok()
        .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

/// Now, as RFC 3339 UTC.
pub fn now_rfc3339() -> String {
    humantime::format_rfc3339_seconds(SystemTime::now()).to_string()
}

#[cfg(test)]
mod tests;

#[cfg(test)]
mod state_file_tests;

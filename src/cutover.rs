//! The cutover knob: the SES percentage operators turn at runtime, where it
//! came from, and where it is kept. Two stores (`cutover.store`):
//!
//! - `file` (one relay): `cutover.state-file` (written atomically: temporary
//!   file, fsync, rename, fsync of the directory), which wins over the config
//!   value at startup so a restart keeps the operators' last word;
//! - `ssm` (a fleet): one SSM parameter ([`ssm`], the client; `shared`, the
//!   start and the refresh) shared by every relay, read every
//!   `refresh-interval`; SSM's version number orders the changes. The
//!   state file then caches the last value seen, for a start while SSM is
//!   unreachable.
//!
//! Every change, whoever makes it (`PUT /cutover`, the rollback guard, the
//! refresh that brings another relay's change), goes through
//! [`Cutover::set`] or the refresh and ends in one audit log line.

mod audit;
mod shared;
pub mod ssm;

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

use self::audit::{Audit, audit};
use crate::config::CutoverStore;
use crate::route::{PercentError, Router, check_percent};
pub use ssm::{SsmStore, StoreError, Versioned};

/// SSM errors are logged at most this often (each one is counted).
const ERROR_LOG_INTERVAL: Duration = Duration::from_secs(60);

/// Where the percentage in force came from, or who changed it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Source {
    /// `cutover.ses-percent` in the config file (or its default); with the SSM
    /// store, the relay that created the parameter from it.
    Config,
    /// The state file written by `PUT /cutover` (file store).
    StateFile,
    /// The rollback guard lowered it (see `crate::guard`).
    Guard,
    /// An operator through `PUT /cutover` or `ses-relay cutover set` (SSM store).
    Api,
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

/// The state file's content (with the SSM store: the local cache of the parameter).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SavedState {
    /// SES share, 0 to 100.
    pub ses_percent: f64,
    /// RFC 3339 time of the change.
    pub updated_at: String,
    /// Why, as the operator said.
    pub reason: String,
    /// Who set it, when not an operator (the rollback guard), or with the SSM
    /// store who wrote the parameter; absent in older files.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<Source>,
    /// SSM parameter version this value had (SSM store only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<i64>,
    /// Host name of the relay that made the change (SSM store only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub updated_by: Option<String>,
}

/// The percentage in force and its provenance (`GET /cutover`).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Status {
    /// SES share applied to new transactions.
    pub ses_percent: f64,
    /// `config` or `state-file` (file store); `api`, `guard` or `config` (SSM store: who wrote it).
    pub source: Source,
    /// When it was last changed at runtime, if ever.
    pub updated_at: Option<String>,
    /// The operator's reason for that change.
    pub reason: Option<String>,
    /// `file` or `ssm`.
    pub store: CutoverStore,
    /// SSM parameter version in force (SSM store).
    pub version: Option<i64>,
    /// When the parameter was last read from SSM (SSM store; `None` until the first read).
    pub refreshed_at: Option<String>,
    /// Host name of the relay that made the change (SSM store).
    pub updated_by: Option<String>,
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
    /// The state file cannot be written; the change was not applied.
    #[error("cannot write cutover.state-file {path}: {source}")]
    Write {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The SSM parameter cannot be written; the change was not applied.
    #[error("{0}; the change was not applied")]
    Store(#[from] StoreError),
}

/// The knob: current status, persisted on every change.
pub struct Cutover {
    state_file: PathBuf,
    ssm: Option<SsmStore>,
    /// `updated_by` of this relay's changes.
    hostname: String,
    status: Arc<Mutex<Status>>,
    /// One change at a time: the store's write and the local apply stay in order.
    writing: Arc<tokio::sync::Mutex<()>>,
    /// When an SSM error was last logged.
    last_error_log: Mutex<Option<Instant>>,
}

impl Cutover {
    /// The file store's status at startup: the state file if there is one, else the config's value.
    pub fn load(state_file: &Path, configured: f64) -> Result<Cutover, CutoverError> {
        let status = match read_state(state_file)? {
            Some(saved) => Status {
                ses_percent: saved.ses_percent,
                source: saved.source.unwrap_or(Source::StateFile),
                updated_at: Some(saved.updated_at),
                reason: Some(saved.reason),
                ..Status::configured(configured, CutoverStore::File)
            },
            None => Status::configured(configured, CutoverStore::File),
        };
        Ok(Cutover::with(state_file, None, String::new(), status))
    }

    fn with(state_file: &Path, ssm: Option<SsmStore>, hostname: String, status: Status) -> Cutover {
        Cutover {
            state_file: state_file.to_path_buf(),
            ssm,
            hostname,
            status: Arc::new(Mutex::new(status)),
            writing: Arc::new(tokio::sync::Mutex::new(())),
            last_error_log: Mutex::new(None),
        }
    }

    /// The status now.
    pub fn status(&self) -> Status {
        self.lock().clone()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Status> {
        self.status.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Validates, persists, then applies a new percentage to `router`. Nothing
    /// changes if the state file cannot be written: a restart must not undo it.
    /// With the SSM store, see [`Cutover::set_by`].
    pub fn set(
        &self,
        router: &Router,
        ses_percent: f64,
        reason: &str,
    ) -> Result<Status, CutoverError> {
        self.set_by(router, ses_percent, reason, Source::StateFile)
    }

    /// [`Cutover::set`] on behalf of `source` (the rollback guard passes
    /// [`Source::Guard`]), which the state file keeps so a restart shows it.
    ///
    /// With the SSM store the change applies here at once and is written to
    /// the parameter right after, on a task of its own (this path cannot
    /// wait: the guard calls it from where it judges), so the whole fleet
    /// follows within `refresh-interval`. If SSM refuses it the change stays
    /// on this relay only, counted and logged, until a newer version arrives.
    pub fn set_by(
        &self,
        router: &Router,
        ses_percent: f64,
        reason: &str,
        source: Source,
    ) -> Result<Status, CutoverError> {
        check_percent(ses_percent)?;
        if let Some(store) = &self.ssm {
            return Ok(self.set_through(store, router, ses_percent, reason, source));
        }
        let mut status = self.lock();
        let saved = SavedState {
            ses_percent,
            updated_at: now_rfc3339(),
            reason: reason.to_string(),
            source: (source == Source::Guard).then_some(source),
            version: None,
            updated_by: None,
        };
        if !self.state_file.as_os_str().is_empty() {
            write_state(&self.state_file, &saved).map_err(|source| CutoverError::Write {
                path: self.state_file.clone(),
                source,
            })?;
        }
        router.set_ses_percent(ses_percent);
        crate::metrics::cutover_percent(ses_percent);
        let before = status.ses_percent;
        *status = Status {
            ses_percent,
            source,
            updated_at: Some(saved.updated_at),
            reason: Some(saved.reason),
            ..Status::configured(ses_percent, CutoverStore::File)
        };
        audit(
            &Audit {
                version: None,
                from: before,
                to: ses_percent,
                reason,
                source,
                updated_by: None,
                how: None,
            },
            "SES percentage changed",
        );
        Ok(status.clone())
    }

    /// `PUT /cutover`'s path: validates, then with the SSM store writes the
    /// parameter first and applies it here once SSM has taken it (SSM not
    /// answering: [`CutoverError::Store`], nothing changes anywhere); with the
    /// file store, [`Cutover::set_by`]. `source` says who asks (`Api` for an
    /// operator, which the file store shows as `state-file`, as it always has).
    pub async fn change(
        &self,
        router: &Router,
        ses_percent: f64,
        reason: &str,
        source: Source,
    ) -> Result<Status, CutoverError> {
        check_percent(ses_percent)?;
        let Some(store) = &self.ssm else {
            let source = if source == Source::Api {
                Source::StateFile
            } else {
                source
            };
            return self.set_by(router, ses_percent, reason, source);
        };
        let _one_at_a_time = self.writing.lock().await;
        let value = self.value(ses_percent, reason, source);
        let version = store.put(&value).await.inspect_err(|err| {
            crate::metrics::cutover_store_error();
            tracing::error!(error = %err, "cutover change not written to SSM");
        })?;
        self.apply(router, Versioned { value, version }, "set");
        Ok(self.status())
    }
}

impl Status {
    fn configured(ses_percent: f64, store: CutoverStore) -> Status {
        Status {
            ses_percent,
            source: Source::Config,
            updated_at: None,
            reason: None,
            store,
            version: None,
            refreshed_at: None,
            updated_by: None,
        }
    }
}

fn read_state(path: &Path) -> Result<Option<SavedState>, CutoverError> {
    if path.as_os_str().is_empty() {
        return Ok(None);
    }
    let corrupt = |reason: String| CutoverError::Corrupt {
        path: path.to_path_buf(),
        reason,
    };
    let text = match std::fs::read_to_string(path) {
        Ok(text) => text,
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(err) => return Err(corrupt(err.to_string())),
    };
    let saved: SavedState = serde_json::from_str(&text).map_err(|err| corrupt(err.to_string()))?;
    if !(0.0..=100.0).contains(&saved.ses_percent) {
        return Err(corrupt(format!(
            "ses_percent {} is outside 0..=100",
            saved.ses_percent
        )));
    }
    Ok(Some(saved))
}

fn write_state(path: &Path, saved: &SavedState) -> std::io::Result<()> {
    use std::io::Write;
    let dir = path
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir)?;
    let tmp = dir.join(format!(
        ".{}.tmp",
        path.file_name()
            .and_then(|n| n.to_str())
            .unwrap_or("cutover.json")
    ));
    let mut file = std::fs::File::create(&tmp)?;
    file.write_all(&serde_json::to_vec_pretty(saved).map_err(std::io::Error::other)?)?;
    file.write_all(b"\n")?;
    file.sync_all()?;
    drop(file);
    std::fs::rename(&tmp, path)?;
    std::fs::File::open(dir)?.sync_all()
}

/// Now, as RFC 3339 UTC.
pub fn now_rfc3339() -> String {
    let secs = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0);
    mail_parser::DateTime::from_timestamp(secs).to_rfc3339()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn temp(name: &str) -> PathBuf {
        let dir =
            std::env::temp_dir().join(format!("ses-relay-cutover-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        dir.join("state").join("cutover.json")
    }

    #[test]
    fn state_file_round_trip_and_it_wins_at_startup() {
        let path = temp("roundtrip");
        let router = Router::new(true, Vec::new(), 10.0);
        let cutover = Cutover::load(&path, 10.0).unwrap();
        assert_eq!(cutover.status().source, Source::Config);
        let status = cutover.set(&router, 50.0, "week 2").unwrap();
        assert_eq!(router.ses_percent(), 50.0);
        assert_eq!(status.source, Source::StateFile);
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

    #[test]
    fn a_guard_change_keeps_its_source_across_a_restart() {
        let path = temp("guard");
        let router = Router::new(true, Vec::new(), 50.0);
        let cutover = Cutover::load(&path, 50.0).unwrap();
        let reason = "guard: failure ratio 0.31 > 0.05 over 5m (62 of 200)";
        let status = cutover.set_by(&router, 0.0, reason, Source::Guard).unwrap();
        assert_eq!((status.source, router.ses_percent()), (Source::Guard, 0.0));
        let status = Cutover::load(&path, 50.0).unwrap().status();
        assert_eq!((status.ses_percent, status.source), (0.0, Source::Guard));
        assert_eq!(status.reason.as_deref(), Some(reason));
        // An operator's change afterwards is the operator's again.
        cutover.set(&router, 10.0, "re-armed").unwrap();
        let status = Cutover::load(&path, 50.0).unwrap().status();
        assert_eq!(status.source, Source::StateFile);
        std::fs::remove_dir_all(path.parent().unwrap().parent().unwrap()).ok();
    }

    #[test]
    fn out_of_range_is_refused_and_nothing_changes() {
        let path = temp("range");
        let router = Router::new(true, Vec::new(), 10.0);
        let cutover = Cutover::load(&path, 10.0).unwrap();
        for bad in [101.0, -1.0, f64::NAN, 12.345, 0.001] {
            assert!(matches!(
                cutover.set(&router, bad, "x"),
                Err(CutoverError::Percent(_))
            ));
        }
        assert!(matches!(
            cutover.set(&router, 12.345, "x"),
            Err(CutoverError::Percent(PercentError::TooPrecise(_)))
        ));
        assert!(matches!(
            cutover.set(&router, -5.0, "x"),
            Err(CutoverError::Percent(PercentError::Negative(_)))
        ));
        assert_eq!(router.ses_percent(), 10.0);
        assert!(!path.exists());
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

    #[test]
    fn unwritable_state_file_refuses_the_change() {
        let path = PathBuf::from("/proc/ses-relay-cannot-write/cutover.json");
        let router = Router::new(true, Vec::new(), 10.0);
        let cutover = Cutover::load(&path, 10.0).unwrap();
        assert!(matches!(
            cutover.set(&router, 50.0, "x"),
            Err(CutoverError::Write { .. })
        ));
        assert_eq!(router.ses_percent(), 10.0);
    }
}

#[cfg(test)]
mod state_file_tests;

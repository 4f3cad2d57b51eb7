//! The cutover knob: the SES percentage operators turn at runtime, where it
//! came from, and its persistence in `cutover.state-file` (written atomically:
//! temporary file, fsync, rename, fsync of the directory), which wins over the
//! config value at startup so a restart keeps the operators' last word.

use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

use crate::route::Router;

/// Where the percentage in force came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Source {
    /// `cutover.ses-percent` in the config file (or its default).
    Config,
    /// The state file written by `PUT /cutover`.
    StateFile,
    /// The rollback guard lowered it (see [`crate::guard`]).
    Guard,
}

/// The state file's content.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SavedState {
    /// SES share, 0 to 100.
    pub ses_percent: f64,
    /// RFC 3339 time of the change.
    pub updated_at: String,
    /// Why, as the operator said.
    pub reason: String,
    /// Who set it, when not an operator (the rollback guard); absent in older files.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<Source>,
}

/// The percentage in force and its provenance (`GET /cutover`).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Status {
    /// SES share applied to new transactions.
    pub ses_percent: f64,
    /// `config` or `state-file`.
    pub source: Source,
    /// When it was last changed at runtime, if ever.
    pub updated_at: Option<String>,
    /// The operator's reason for that change.
    pub reason: Option<String>,
}

/// Why a cutover change or load failed.
#[derive(Debug, thiserror::Error)]
pub enum CutoverError {
    /// Not a percentage.
    #[error("ses_percent must be a number from 0 to 100, got {0}")]
    OutOfRange(f64),
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
}

/// The knob: current status, persisted on every change.
pub struct Cutover {
    state_file: PathBuf,
    status: Mutex<Status>,
}

impl Cutover {
    /// The status at startup: the state file if there is one, else the config's value.
    pub fn load(state_file: &Path, configured: f64) -> Result<Cutover, CutoverError> {
        let status = match read_state(state_file)? {
            Some(saved) => Status {
                ses_percent: saved.ses_percent,
                source: saved.source.unwrap_or(Source::StateFile),
                updated_at: Some(saved.updated_at),
                reason: Some(saved.reason),
            },
            None => Status {
                ses_percent: configured,
                source: Source::Config,
                updated_at: None,
                reason: None,
            },
        };
        Ok(Cutover {
            state_file: state_file.to_path_buf(),
            status: Mutex::new(status),
        })
    }

    /// The status now.
    pub fn status(&self) -> Status {
        self.status
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Validates, persists, then applies a new percentage to `router`. Nothing
    /// changes if the state file cannot be written: a restart must not undo it.
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
    pub fn set_by(
        &self,
        router: &Router,
        ses_percent: f64,
        reason: &str,
        source: Source,
    ) -> Result<Status, CutoverError> {
        if !ses_percent.is_finite() || !(0.0..=100.0).contains(&ses_percent) {
            return Err(CutoverError::OutOfRange(ses_percent));
        }
        let mut status = self.status.lock().unwrap_or_else(|p| p.into_inner());
        let saved = SavedState {
            ses_percent,
            updated_at: now_rfc3339(),
            reason: reason.to_string(),
            source: (source == Source::Guard).then_some(source),
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
        };
        tracing::info!(
            audit = "cutover",
            from = before,
            to = ses_percent,
            source = ?source,
            reason,
            "SES percentage changed"
        );
        Ok(status.clone())
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
    use std::sync::Arc;

    use super::*;
    use crate::forward::Unreachable as Nowhere;

    fn temp(name: &str) -> PathBuf {
        let dir =
            std::env::temp_dir().join(format!("ses-relay-cutover-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        dir.join("state").join("cutover.json")
    }

    #[test]
    fn state_file_round_trip_and_it_wins_at_startup() {
        let path = temp("roundtrip");
        let router = Router::new(Arc::new(Nowhere), Some(Arc::new(Nowhere)), Vec::new(), 10.0);
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
    fn a_guard_change_keeps_its_source_across_a_restart() {
        let path = temp("guard");
        let router = Router::new(Arc::new(Nowhere), Some(Arc::new(Nowhere)), Vec::new(), 50.0);
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
        let router = Router::new(Arc::new(Nowhere), Some(Arc::new(Nowhere)), Vec::new(), 10.0);
        let cutover = Cutover::load(&path, 10.0).unwrap();
        for bad in [101.0, -1.0, f64::NAN] {
            assert!(matches!(
                cutover.set(&router, bad, "x"),
                Err(CutoverError::OutOfRange(_))
            ));
        }
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
        let router = Router::new(Arc::new(Nowhere), Some(Arc::new(Nowhere)), Vec::new(), 10.0);
        let cutover = Cutover::load(&path, 10.0).unwrap();
        assert!(matches!(
            cutover.set(&router, 50.0, "x"),
            Err(CutoverError::Write { .. })
        ));
        assert_eq!(router.ses_percent(), 10.0);
    }
}

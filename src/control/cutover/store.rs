//! Where the cutover value is kept: the [`Store`] trait, and the file store
//! (one relay: `cutover.state-file`). The SSM store (a fleet) is in `ssm`.
//!
//! A store only keeps and returns values: which value is in force, and in
//! what order changes apply, is the cutover's (`super::order`).

use std::future::Future;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::{CutoverError, Record, Source};
use crate::config::CutoverStore;
use crate::message::route::Percent;

/// A boxed future of a store call (the trait is used as `dyn Store`).
pub(crate) type StoreFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// A value as a shared store holds it, with what orders it.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Observed {
    /// The value.
    pub(crate) record: Record,
    /// The store's version of it (SSM's parameter version).
    pub(crate) version: i64,
}

/// Why a write failed, and whether it may still have taken effect.
#[derive(Debug, thiserror::Error)]
pub enum WriteError {
    /// Certainly not written: refused, or never sent. The store will not
    /// change because of this write afterwards.
    #[error("{0}")]
    NotApplied(#[source] Box<dyn std::error::Error + Send + Sync>),
    /// Sent, but no answer came (timed out, connection lost): the store may
    /// hold the value now, or later.
    #[error("{0}")]
    Unknown(#[source] Box<dyn std::error::Error + Send + Sync>),
}

/// A store of the cutover value.
pub(crate) trait Store: Send + Sync {
    /// `file` or `ssm`, as `GET /cutover` names it.
    fn kind(&self) -> CutoverStore;

    /// Writes a change; the version the store gave it (shared stores).
    fn write<'a>(&'a self, record: &'a Record) -> StoreFuture<'a, Result<Option<i64>, WriteError>>;

    /// Reads the value other relays may have written; `Ok(None)` when the
    /// store has none (never, for a store only this relay writes).
    fn read(&self) -> StoreFuture<'_, Result<Option<Observed>, super::ssm::StoreError>>;

    /// Keeps the value in force for the next start (a shared store's local
    /// cache); a failure only costs that, so it is logged, not returned.
    fn cache<'a>(&'a self, record: &'a Record, version: Option<i64>) -> StoreFuture<'a, ()>;

    /// How often to read the store for other relays' changes (shared stores).
    fn refresh_interval(&self) -> Option<Duration>;
}

/// The state file's content (with the SSM store: the local cache of the parameter).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SavedState {
    /// SES share, 0 to 100.
    pub ses_percent: Percent,
    /// RFC 3339 time of the change.
    pub updated_at: String,
    /// Why, as the operator said.
    pub reason: String,
    /// Who made the change; absent in older files (an operator's, then).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<Source>,
    /// SSM parameter version this value had (SSM store only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<i64>,
    /// Host name of the relay that made the change.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub updated_by: Option<String>,
    /// The change's unique id; absent in older files.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub change_id: Option<String>,
}

impl SavedState {
    pub(crate) fn of(record: &Record, version: Option<i64>) -> SavedState {
        SavedState {
            ses_percent: record.ses_percent,
            updated_at: record.updated_at.clone(),
            reason: record.reason.clone(),
            source: Some(record.source),
            version,
            updated_by: Some(record.updated_by.clone()).filter(|b| !b.is_empty()),
            change_id: Some(record.change_id.clone()),
        }
    }

    pub(crate) fn record(&self) -> Record {
        Record {
            ses_percent: self.ses_percent,
            reason: self.reason.clone(),
            updated_at: self.updated_at.clone(),
            updated_by: self.updated_by.clone().unwrap_or_default(),
            source: self.source.unwrap_or(Source::StateFile),
            change_id: self
                .change_id
                .clone()
                .unwrap_or_else(|| format!("state-file@{}", self.updated_at)),
        }
    }
}

/// The file store: `cutover.state-file`, written atomically off the async workers.
pub(crate) struct FileStore {
    path: PathBuf,
}

impl FileStore {
    pub(crate) fn new(path: &Path) -> FileStore {
        FileStore {
            path: path.to_path_buf(),
        }
    }

    /// What the file holds; `None` when it does not exist (or no file is configured).
    pub(crate) fn load(&self) -> Result<Option<SavedState>, CutoverError> {
        read_state(&self.path)
    }

    async fn save(&self, saved: SavedState) -> std::io::Result<()> {
        if self.path.as_os_str().is_empty() {
            return Ok(());
        }
        let path = self.path.clone();
        tokio::task::spawn_blocking(move || write_state(&path, &saved))
            .await
            .map_err(std::io::Error::other)?
    }
}

/// A file-store write failure, naming the file.
#[derive(Debug, thiserror::Error)]
#[error("cannot write cutover.state-file {path}: {source}")]
pub struct FileWriteError {
    path: PathBuf,
    source: std::io::Error,
}

impl Store for FileStore {
    fn kind(&self) -> CutoverStore {
        CutoverStore::File
    }

    fn write<'a>(&'a self, record: &'a Record) -> StoreFuture<'a, Result<Option<i64>, WriteError>> {
        Box::pin(async move {
            self.save(SavedState::of(record, None))
                .await
                .map(|()| None)
                .map_err(|source| {
                    WriteError::NotApplied(Box::new(FileWriteError {
                        path: self.path.clone(),
                        source,
                    }))
                })
        })
    }

    fn read(&self) -> StoreFuture<'_, Result<Option<Observed>, super::ssm::StoreError>> {
        Box::pin(async { Ok(None) })
    }

    fn cache<'a>(&'a self, _record: &'a Record, _version: Option<i64>) -> StoreFuture<'a, ()> {
        // The write is the file: nothing more to keep.
        Box::pin(async {})
    }

    fn refresh_interval(&self) -> Option<Duration> {
        None
    }
}

/// Keeps `record` in `path` as a cache, logging a failure (SSM store).
pub(crate) async fn cache_to(path: &Path, record: &Record, version: Option<i64>) {
    let store = FileStore::new(path);
    if let Err(err) = store.save(SavedState::of(record, version)).await {
        tracing::warn!(state_file = %path.display(), error = %err, "cannot cache the cutover value");
    }
}

pub(crate) fn read_state(path: &Path) -> Result<Option<SavedState>, CutoverError> {
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
    // `ses_percent` goes through the one validation (`Percent`) here too.
    serde_json::from_str(&text)
        .map(Some)
        .map_err(|err| corrupt(err.to_string()))
}

/// Temporary file, fsync, rename, fsync of the directory: a crash leaves the
/// old value or the new one, never half of one. Blocking: call it off the
/// async workers.
pub(crate) fn write_state(path: &Path, saved: &SavedState) -> std::io::Result<()> {
    let dir = path
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir)?;
    let name = path
        .file_name()
        .and_then(|n| n.to_str())
        .unwrap_or("cutover.json");
    let mut json = serde_json::to_vec_pretty(saved).map_err(std::io::Error::other)?;
    json.push(b'\n');
    crate::files::write_atomically(dir, name, &json)?;
    crate::files::sync_dir(dir)
}

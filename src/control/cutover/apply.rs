//! How a change is put in force: the write to the store and its outcome,
//! the local apply (share, metric, status, audit line), and the judgement of
//! a value read from the store (`super::order`).

use std::time::{Duration, Instant};

use super::audit::{Audit, audit};
use super::order::{self, InForce, Seen, Verdict};
use super::store::{Observed, WriteError};
use super::{Cutover, CutoverError, ERROR_LOG_INTERVAL, Record, State, Status, millis_of};
use crate::config::CutoverStore;

impl Cutover {
    pub(super) async fn write_then_apply(&self, record: Record) -> Result<Status, CutoverError> {
        let _one_at_a_time = self.inner.writing.lock().await;
        match self.inner.store.write(&record).await {
            Ok(version) => {
                let mut state = self.lock();
                self.install(&mut state, &record, version, false, "set");
                let status = state.status.clone();
                drop(state);
                self.keep(&record, version);
                Ok(status)
            }
            Err(WriteError::NotApplied(err)) => {
                crate::metrics::cutover_store_error();
                tracing::error!(error = %err, to = %record.ses_percent, "cutover change refused by the store: not applied");
                Err(CutoverError::NotApplied(err))
            }
            Err(WriteError::Unknown(err)) => {
                crate::metrics::cutover_store_error();
                tracing::error!(
                    error = %err,
                    to = %record.ses_percent,
                    change_id = %record.change_id,
                    "cutover change sent to the store without an answer: applied unknown; reading the store until known"
                );
                self.resolve(record.change_id.clone());
                Err(CutoverError::Unknown(err))
            }
        }
    }

    /// Writes a change already in force here until the store has it.
    pub(super) async fn write_until_known(&self, record: Record) -> Result<Status, CutoverError> {
        let mut delay = Duration::from_millis(500);
        loop {
            if self.lock().status.change_id.as_deref() != Some(record.change_id.as_str()) {
                // A newer change replaced it: writing this one would undo that.
                return Ok(self.status());
            }
            let written = {
                let _one_at_a_time = self.inner.writing.lock().await;
                self.inner.store.write(&record).await
            };
            let err = match written {
                Ok(version) => {
                    self.confirm(&record, version);
                    return Ok(self.status());
                }
                Err(err) => err,
            };
            if self.inner.store.kind() == CutoverStore::File {
                crate::metrics::cutover_store_error();
                tracing::error!(error = %err, "cutover change in force here but not saved: a restart would undo it");
                return Err(match err {
                    WriteError::NotApplied(err) | WriteError::Unknown(err) => {
                        CutoverError::NotApplied(err)
                    }
                });
            }
            if let WriteError::Unknown(_) = err {
                // It may have landed: read before writing it again.
                if let Ok(Some(seen)) = self.inner.store.read().await
                    && seen.record.change_id == record.change_id
                {
                    self.confirm(&record, Some(seen.version));
                    return Ok(self.status());
                }
            }
            self.log_store_error(&format!(
                "{err}; the change ({}%, {}) holds here and is written again in {delay:?}",
                record.ses_percent, record.change_id
            ));
            tokio::time::sleep(delay).await;
            delay = (delay * 2).min(Duration::from_secs(30));
        }
    }

    /// The store has the change in force here: record its version.
    pub(super) fn confirm(&self, record: &Record, version: Option<i64>) {
        let mut state = self.lock();
        if state.status.change_id.as_deref() != Some(record.change_id.as_str()) {
            return;
        }
        state.status.version = version.or(state.status.version);
        state.status.pending_write = false;
        drop(state);
        if let Some(version) = version {
            crate::metrics::cutover_store_version(version);
        }
        tracing::info!(
            audit = "cutover",
            version,
            to = record.ses_percent.as_f64(),
            source = %record.source,
            change_id = %record.change_id,
            "SES percentage written to the store: the fleet follows"
        );
        self.keep(record, version);
    }

    /// Puts `record` in force: the share the router reads, the metric, the
    /// status, one audit line.
    pub(super) fn install(
        &self,
        state: &mut State,
        record: &Record,
        version: Option<i64>,
        pending: bool,
        how: &'static str,
    ) {
        let before = state.status.ses_percent;
        let refreshed_at = state.status.refreshed_at.take();
        self.inner.share.publish(record.ses_percent);
        crate::metrics::cutover_percent(record.ses_percent.as_f64());
        if let Some(version) = version {
            crate::metrics::cutover_store_version(version);
        }
        state.status = Status {
            refreshed_at,
            pending_write: pending,
            ..Status::of(record, self.inner.store.kind(), version)
        };
        state.written_at = millis_of(&record.updated_at);
        if record.source.is_operator() {
            self.inner.operator_changes.send_modify(|n| *n += 1);
        }
        audit(
            &Audit {
                version,
                from: before,
                to: record.ses_percent.as_f64(),
                reason: &record.reason,
                source: record.source,
                updated_by: Some(record.updated_by.as_str()).filter(|b| !b.is_empty()),
                how: (self.inner.store.kind() == CutoverStore::Ssm).then_some(how),
                change_id: &record.change_id,
            },
            if pending {
                "SES percentage changed here; writing it to the store"
            } else {
                "SES percentage changed"
            },
        );
    }

    /// Keeps what is in force for the next start (SSM: the state file cache), off this task.
    pub(super) fn keep(&self, record: &Record, version: Option<i64>) {
        let this = self.clone();
        let record = record.clone();
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            runtime.spawn(async move { this.inner.store.cache(&record, version).await });
        }
    }

    /// Judges a value read from the store against the one in force, and puts
    /// it in force when it is newer; whether it did.
    pub(super) fn observe(&self, seen: &Observed, how: &'static str) -> bool {
        let mut state = self.lock();
        let in_force = InForce {
            change_id: state.status.change_id.as_deref().unwrap_or(""),
            version: state.status.version,
            written_at: state.written_at,
            pending: state.status.pending_write,
        };
        let written_at = millis_of(&seen.record.updated_at);
        let verdict = order::verdict(
            in_force,
            Seen {
                change_id: &seen.record.change_id,
                version: seen.version,
                written_at,
            },
        );
        let before_version = state.status.version;
        match verdict {
            Verdict::Same => {
                if state.status.version != Some(seen.version) {
                    state.status.version = Some(seen.version);
                    crate::metrics::cutover_store_version(seen.version);
                }
                state.status.pending_write = false;
                false
            }
            Verdict::Apply { recreated } => {
                if recreated {
                    tracing::warn!(
                        audit = "cutover",
                        from_version = before_version,
                        to_version = seen.version,
                        change_id = %seen.record.change_id,
                        "the SSM parameter was re-created (its version went back): following its newer value"
                    );
                }
                self.install(&mut state, &seen.record, Some(seen.version), false, how);
                drop(state);
                self.keep(&seen.record, Some(seen.version));
                true
            }
            Verdict::KeepPending => false,
            Verdict::KeepOlder => {
                if state
                    .last_refusal_log
                    .is_none_or(|at| at.elapsed() >= ERROR_LOG_INTERVAL)
                {
                    state.last_refusal_log = Some(Instant::now());
                    tracing::warn!(
                        version = seen.version,
                        in_force_version = before_version,
                        updated_at = %seen.record.updated_at,
                        "the SSM parameter went back to a lower version with a value older than the one \
                         in force (re-created from an old copy?): kept the value in force"
                    );
                }
                false
            }
        }
    }

    /// Counts a store error and logs it at most once a minute.
    pub(super) fn log_store_error(&self, reason: &str) {
        crate::metrics::cutover_store_error();
        let mut state = self.lock();
        if state
            .last_error_log
            .is_none_or(|at| at.elapsed() >= ERROR_LOG_INTERVAL)
        {
            state.last_error_log = Some(Instant::now());
            tracing::warn!(error = %reason, "cutover store");
        }
    }
}

//! The SSM store's side of the knob: the start (parameter, else the cached
//! copy, else the config, and the log says which), the periodic refresh, and
//! applying a version newer than the one in force.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use aws_credential_types::provider::SharedCredentialsProvider;

use super::audit::{Audit, audit};
use super::ssm::{self, ParameterValue, SsmStore, StoreError, Versioned};
use super::{
    Cutover, CutoverError, ERROR_LOG_INTERVAL, SavedState, Source, Status, now_rfc3339, read_state,
    write_state,
};
use crate::config::{Config, CutoverStore};
use crate::route::Router;

impl Cutover {
    /// The store `cutover.store` names: [`Cutover::load`] for `file`; for
    /// `ssm`, the parameter (created from `cutover.ses-percent` when it does
    /// not exist yet), else, SSM unreachable, the value cached in the state
    /// file, else the config's value, and the log says which.
    /// `credentials` replaces the AWS chain's (tests).
    pub async fn open(
        config: &Config,
        credentials: Option<SharedCredentialsProvider>,
    ) -> Result<Cutover, CutoverError> {
        let cutover = &config.cutover;
        let configured = config.configured_ses_percent();
        if cutover.store == CutoverStore::File {
            return Cutover::load(&cutover.state_file, configured);
        }
        let store = SsmStore::new(
            &cutover.ssm_parameter,
            &config.ses.region,
            &cutover.endpoint_url,
            credentials,
        )
        .await;
        crate::metrics::cutover_store_errors(0);
        let hostname = ssm::hostname(&config.smtp.hostname);
        // A cache that cannot be read is no reason to stay down while SSM answers.
        let cached = read_state(&cutover.state_file).unwrap_or_else(|err| {
            tracing::warn!(error = %err, "cutover cache unusable, ignored");
            None
        });
        let knob = Cutover::with(
            &cutover.state_file,
            None,
            hostname.clone(),
            Status::configured(configured, CutoverStore::Ssm),
        );
        let found = match store.get().await {
            Ok(None) => {
                if let Some(saved) = cached.as_ref().filter(|c| c.ses_percent != configured) {
                    // Switching from `store = "file"`: the rule is that the parameter
                    // starts from the config; the operator should know what that replaces.
                    tracing::warn!(
                        ses_percent = configured,
                        state_file_percent = saved.ses_percent,
                        "SSM parameter absent: creating it from cutover.ses-percent, not from the state file"
                    );
                }
                knob.create(&store, configured).await
            }
            other => other,
        };
        let status = match found {
            Ok(Some(shared)) => {
                knob.cache(&shared);
                tracing::info!(
                    parameter = store.parameter(),
                    version = shared.version,
                    ses_percent = shared.value.ses_percent,
                    "cutover from the SSM parameter"
                );
                Status::shared(&shared, Some(now_rfc3339()))
            }
            Ok(None) | Err(_) => {
                if let Err(err) = &found {
                    crate::metrics::cutover_store_error();
                    tracing::warn!(error = %err, "SSM unreachable at startup");
                }
                match cached {
                    Some(saved) => {
                        tracing::warn!(
                            parameter = store.parameter(),
                            state_file = %cutover.state_file.display(),
                            version = saved.version,
                            ses_percent = saved.ses_percent,
                            "starting from the last value seen, cached in cutover.state-file, \
                             until SSM answers"
                        );
                        Status::cached(saved)
                    }
                    None => {
                        tracing::warn!(
                            parameter = store.parameter(),
                            ses_percent = configured,
                            "no value from SSM and none cached in cutover.state-file: \
                             starting from cutover.ses-percent until SSM answers"
                        );
                        Status::configured(configured, CutoverStore::Ssm)
                    }
                }
            }
        };
        if let Some(version) = status.version {
            crate::metrics::cutover_store_version(version);
        }
        Ok(Cutover::with(
            &cutover.state_file,
            Some(store),
            hostname,
            status,
        ))
    }

    /// Creates the parameter from the config's value; whoever loses a race
    /// reads the winner's value.
    async fn create(
        &self,
        store: &SsmStore,
        configured: f64,
    ) -> Result<Option<Versioned>, StoreError> {
        let value = self.value(
            configured,
            "created from cutover.ses-percent",
            Source::Config,
        );
        match store.create(&value).await? {
            Some(version) => {
                tracing::info!(
                    audit = "cutover",
                    parameter = store.parameter(),
                    version,
                    to = configured,
                    source = "config",
                    "SSM parameter created from cutover.ses-percent"
                );
                Ok(Some(Versioned { value, version }))
            }
            None => store.get().await,
        }
    }

    pub(super) fn value(&self, ses_percent: f64, reason: &str, source: Source) -> ParameterValue {
        ParameterValue {
            ses_percent,
            reason: reason.to_string(),
            updated_at: now_rfc3339(),
            updated_by: self.hostname.clone(),
            source,
        }
    }

    /// Reads the SSM parameter and applies it when its version is newer than
    /// the one in force. SSM unreachable: routing stays on the last value,
    /// the error is counted and logged at most once a minute. No-op with the
    /// file store. Returns who made the change it applied, if it applied one
    /// (an operator's change elsewhere in the fleet re-arms the guard here too).
    pub async fn refresh(&self, router: &Router) -> Option<Source> {
        let Some(store) = &self.ssm else {
            return None;
        };
        let read = match store.get().await {
            Ok(Some(shared)) => Ok(shared),
            Ok(None) => Err(format!(
                "SSM parameter {} does not exist (deleted?); keeping {}%",
                store.parameter(),
                self.status().ses_percent
            )),
            Err(err) => Err(format!(
                "{err}; keeping {}% (version {:?})",
                self.status().ses_percent,
                self.status().version
            )),
        };
        match read {
            Ok(shared) => {
                let _one_at_a_time = self.writing.lock().await;
                let source = shared.value.source;
                let applied = self.apply(router, shared, "refresh").then_some(source);
                self.lock().refreshed_at = Some(now_rfc3339());
                let recovered = self
                    .last_error_log
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .take()
                    .is_some();
                if recovered {
                    tracing::info!(parameter = store.parameter(), "SSM answers again");
                }
                applied
            }
            Err(reason) => {
                crate::metrics::cutover_store_error();
                let mut last = self
                    .last_error_log
                    .lock()
                    .unwrap_or_else(|p| p.into_inner());
                if last.is_none_or(|at| at.elapsed() >= ERROR_LOG_INTERVAL) {
                    *last = Some(Instant::now());
                    tracing::warn!(error = %reason, "cutover refresh failed");
                }
                None
            }
        }
    }

    /// Applies a value read from or written to SSM if it is newer than the one
    /// in force; whether it did.
    pub(super) fn apply(&self, router: &Router, shared: Versioned, how: &'static str) -> bool {
        let mut status = self.lock();
        if status.version.is_some_and(|v| v >= shared.version) {
            return false;
        }
        let before = status.ses_percent;
        router.set_ses_percent(shared.value.ses_percent);
        crate::metrics::cutover_percent(shared.value.ses_percent);
        crate::metrics::cutover_store_version(shared.version);
        let refreshed_at = status.refreshed_at.take();
        *status = Status::shared(&shared, refreshed_at);
        drop(status);
        audit(
            &Audit {
                version: Some(shared.version),
                from: before,
                to: shared.value.ses_percent,
                reason: &shared.value.reason,
                source: shared.value.source,
                updated_by: Some(&shared.value.updated_by),
                how: Some(how),
            },
            "SES percentage changed",
        );
        self.cache(&shared);
        true
    }

    /// Keeps the value in the state file for a start while SSM is unreachable;
    /// a failure only costs that, so it is logged, not returned.
    fn cache(&self, shared: &Versioned) {
        cache_to(&self.state_file, shared);
    }

    /// [`Cutover::set_by`] with the SSM store: applies the change here now
    /// (the version in force stays until SSM has taken it, so a refresh of
    /// that same version cannot undo it), then writes it on a task.
    pub(super) fn set_through(
        &self,
        store: &SsmStore,
        router: &Router,
        ses_percent: f64,
        reason: &str,
        source: Source,
    ) -> Status {
        // The parameter knows `api`, `guard` and `config`: an operator's `set` is `api`.
        let source = match source {
            Source::StateFile => Source::Api,
            other => other,
        };
        let value = self.value(ses_percent, reason, source);
        let mut status = self.lock();
        let before = status.ses_percent;
        router.set_ses_percent(ses_percent);
        crate::metrics::cutover_percent(ses_percent);
        *status = Status {
            ses_percent,
            source,
            updated_at: Some(value.updated_at.clone()),
            reason: Some(value.reason.clone()),
            store: CutoverStore::Ssm,
            version: status.version,
            refreshed_at: status.refreshed_at.take(),
            updated_by: Some(value.updated_by.clone()),
        };
        let applied = status.clone();
        drop(status);
        audit(
            &Audit {
                version: None,
                from: before,
                to: ses_percent,
                reason,
                source,
                updated_by: None,
                how: Some("set"),
            },
            "SES percentage changed here; writing it to SSM",
        );
        let task = write_through(
            store.clone(),
            value,
            self.status.clone(),
            self.writing.clone(),
            self.state_file.clone(),
        );
        match tokio::runtime::Handle::try_current() {
            Ok(runtime) => drop(runtime.spawn(task)),
            Err(_) => tracing::error!("no async runtime: the change holds on this relay only"),
        }
        applied
    }
}

/// Writes a change already in force here to the parameter; records the
/// version SSM gave it unless a newer one has arrived meanwhile.
async fn write_through(
    store: SsmStore,
    value: ParameterValue,
    status: Arc<Mutex<Status>>,
    writing: Arc<tokio::sync::Mutex<()>>,
    state_file: PathBuf,
) {
    let _one_at_a_time = writing.lock().await;
    match store.put(&value).await {
        Ok(version) => {
            let mut status = status.lock().unwrap_or_else(|p| p.into_inner());
            let ours = status.ses_percent == value.ses_percent
                && status.reason.as_deref() == Some(value.reason.as_str())
                && status.updated_at.as_deref() == Some(value.updated_at.as_str());
            if ours && status.version.is_none_or(|v| v < version) {
                status.version = Some(version);
                drop(status);
                crate::metrics::cutover_store_version(version);
                tracing::info!(
                    audit = "cutover",
                    version,
                    to = value.ses_percent,
                    source = %value.source,
                    "SES percentage written to SSM: the fleet follows"
                );
                cache_to(&state_file, &Versioned { value, version });
            }
        }
        Err(err) => {
            crate::metrics::cutover_store_error();
            tracing::error!(
                error = %err,
                to = value.ses_percent,
                "cutover change not written to SSM: it holds on this relay only"
            );
        }
    }
}

/// Keeps the value in the state file for a start while SSM is unreachable;
/// a failure only costs that, so it is logged, not returned.
fn cache_to(state_file: &Path, shared: &Versioned) {
    if state_file.as_os_str().is_empty() {
        return;
    }
    let saved = SavedState {
        ses_percent: shared.value.ses_percent,
        updated_at: shared.value.updated_at.clone(),
        reason: shared.value.reason.clone(),
        version: Some(shared.version),
        source: Some(shared.value.source),
        updated_by: Some(shared.value.updated_by.clone()),
    };
    if let Err(err) = write_state(state_file, &saved) {
        tracing::warn!(state_file = %state_file.display(), error = %err, "cannot cache the cutover value");
    }
}

impl Status {
    fn shared(shared: &Versioned, refreshed_at: Option<String>) -> Status {
        Status {
            ses_percent: shared.value.ses_percent,
            source: shared.value.source,
            updated_at: Some(shared.value.updated_at.clone()),
            reason: Some(shared.value.reason.clone()),
            store: CutoverStore::Ssm,
            version: Some(shared.version),
            refreshed_at,
            updated_by: Some(shared.value.updated_by.clone()),
        }
    }

    fn cached(saved: SavedState) -> Status {
        Status {
            ses_percent: saved.ses_percent,
            source: saved.source.unwrap_or(Source::StateFile),
            updated_at: Some(saved.updated_at),
            reason: Some(saved.reason),
            store: CutoverStore::Ssm,
            version: saved.version,
            refreshed_at: None,
            updated_by: saved.updated_by,
        }
    }
}

//! The cutover at startup ([`Cutover::open`]), and the shared store read
//! afterwards: the refresh every `refresh-interval`, and the reads after a
//! write whose outcome is unknown.

use std::time::Duration;

use aws_credential_types::provider::SharedCredentialsProvider;

use super::ssm::{self, SsmStore, StoreError};
use super::store::WriteError;
use super::store::{Observed, read_state};
use super::{Cutover, CutoverError, Record, Source, now_rfc3339};
use crate::config::{Config, CutoverStore};
use crate::message::route::Percent;

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
        let configured = Percent::new(configured)?;
        let store = SsmStore::new(
            &cutover.ssm_parameter,
            &config.ses.region,
            &cutover.endpoint_url,
            credentials,
        )
        .await
        .caching(&cutover.state_file, cutover.refresh_interval.0);
        crate::metrics::cutover_store_errors(0);
        let hostname = ssm::hostname(&config.smtp.hostname);
        // A cache that cannot be read is no reason to stay down while SSM answers.
        let cached = read_state(&cutover.state_file).unwrap_or_else(|err| {
            tracing::warn!(error = %err, "cutover cache unusable, ignored");
            None
        });
        let found = match store.get().await {
            Ok(None) => {
                if let Some(saved) = cached.as_ref().filter(|c| c.ses_percent != configured) {
                    // Switching from `store = "file"`: the parameter starts from the config;
                    // the operator should know what that replaces.
                    tracing::warn!(
                        ses_percent = %configured,
                        state_file_percent = %saved.ses_percent,
                        "SSM parameter absent: creating it from cutover.ses-percent, not from the state file"
                    );
                }
                let record = Record::new(
                    configured,
                    "created from cutover.ses-percent",
                    Source::Config,
                    &hostname,
                );
                create(&store, record).await
            }
            other => other.map_err(StartupError::Read),
        };
        let (record, version, refreshed) = match found {
            Ok(Some((record, version))) => {
                tracing::info!(
                    parameter = store.parameter(),
                    version,
                    ses_percent = %record.ses_percent,
                    "cutover from the SSM parameter"
                );
                (record, Some(version), true)
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
                            ses_percent = %saved.ses_percent,
                            "starting from the last value seen, cached in cutover.state-file, \
                             until SSM answers"
                        );
                        (saved.record(), saved.version, false)
                    }
                    None => {
                        tracing::warn!(
                            parameter = store.parameter(),
                            ses_percent = %configured,
                            "no value from SSM and none cached in cutover.state-file: \
                             starting from cutover.ses-percent until SSM answers"
                        );
                        (Record::configured(configured), None, false)
                    }
                }
            }
        };
        let cutover = Cutover::with(Box::new(store), hostname, record.clone(), version);
        if refreshed {
            cutover.lock().status.refreshed_at = Some(now_rfc3339());
            cutover.keep(&record, version);
        }
        Ok(cutover)
    }

    /// Reads the shared store and puts its value in force when it is newer
    /// (`order`). Store unreachable, parameter gone or its value refused:
    /// routing stays on the value in force, the error is counted and logged
    /// at most once a minute. Whether a value was put in force.
    pub async fn refresh(&self) -> bool {
        let read = self.inner.store.read().await;
        match read {
            Ok(Some(seen)) => {
                let _one_at_a_time = self.inner.writing.lock().await;
                let applied = self.observe(&seen, "refresh");
                let mut state = self.lock();
                state.status.refreshed_at = Some(now_rfc3339());
                if state.last_error_log.take().is_some() {
                    tracing::info!("cutover store answers again");
                }
                applied
            }
            Ok(None) => {
                let status = self.status();
                self.log_store_error(&format!(
                    "the SSM parameter does not exist (deleted?); keeping {}% (version {:?})",
                    status.ses_percent, status.version
                ));
                false
            }
            Err(err) => {
                let status = self.status();
                self.log_store_error(&format!(
                    "{err}; keeping {}% (version {:?})",
                    status.ses_percent, status.version
                ));
                false
            }
        }
    }

    /// After a write whose outcome is unknown: reads the store until it
    /// answers, puts what it holds in force if newer, and logs one audit
    /// line saying whether the write landed and what is in force.
    pub(super) fn resolve(&self, change_id: String) {
        let this = self.clone();
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return;
        };
        runtime.spawn(async move {
            let mut delay = Duration::from_millis(500);
            loop {
                tokio::time::sleep(delay).await;
                let seen = match this.inner.store.read().await {
                    Ok(seen) => seen,
                    Err(_) => {
                        delay = (delay * 2).min(Duration::from_secs(5));
                        continue;
                    }
                };
                let _one_at_a_time = this.inner.writing.lock().await;
                let landed = seen
                    .as_ref()
                    .is_some_and(|s: &Observed| s.record.change_id == change_id);
                if let Some(seen) = &seen {
                    this.observe(seen, "resolve");
                }
                let status = this.status();
                tracing::info!(
                    audit = "cutover",
                    change_id = %change_id,
                    applied = landed,
                    ses_percent = status.ses_percent,
                    version = status.version,
                    source = %status.source,
                    "the outcome of the unknown cutover write is known"
                );
                return;
            }
        });
    }
}

/// Why SSM gave no value at startup.
#[derive(Debug, thiserror::Error)]
enum StartupError {
    /// Reading the parameter failed, or its value is refused.
    #[error(transparent)]
    Read(#[from] StoreError),
    /// Creating it (it did not exist) failed or may have failed.
    #[error(transparent)]
    Create(#[from] WriteError),
}

/// Creates the parameter from the config's value; whoever loses a race
/// reads the winner's value.
async fn create(store: &SsmStore, record: Record) -> Result<Option<(Record, i64)>, StartupError> {
    match store.create(&record).await {
        Ok(Some(version)) => {
            tracing::info!(
                audit = "cutover",
                parameter = store.parameter(),
                version,
                to = record.ses_percent.as_f64(),
                source = "config",
                change_id = %record.change_id,
                "SSM parameter created from cutover.ses-percent"
            );
            Ok(Some((record, version)))
        }
        Ok(None) => Ok(store.get().await?),
        Err(err) => Err(err.into()),
    }
}

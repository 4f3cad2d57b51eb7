//! The shared cutover store: one SSM Parameter Store parameter that every
//! relay of a fleet reads every `cutover.refresh-interval` and writes on a
//! change. SSM's own parameter version orders the changes, so no relay needs
//! a clock or a lock of its own: a higher version is a newer value.

use std::time::Duration;

use aws_config::BehaviorVersion;
use aws_config::retry::RetryConfig;
use aws_config::timeout::TimeoutConfig;
use aws_credential_types::provider::SharedCredentialsProvider;
use aws_sdk_ssm::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_ssm::types::ParameterType;
use serde::{Deserialize, Serialize};

use super::Source;

/// Bound on one SSM call, retries included: a refresh must not pile up behind
/// a hung connection, and `PUT /cutover` must answer the operator quickly.
const CALL_TIMEOUT: Duration = Duration::from_secs(5);

/// The parameter's JSON value.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ParameterValue {
    /// SES share, 0 to 100.
    pub ses_percent: f64,
    /// Why, as the operator (or the guard) said.
    pub reason: String,
    /// RFC 3339 time of the change.
    pub updated_at: String,
    /// Host name of the relay that wrote it.
    pub updated_by: String,
    /// Who made the change: `api`, `guard` or `config`.
    pub source: Source,
}

/// The parameter as read: its value and SSM's version number.
#[derive(Debug, Clone, PartialEq)]
pub struct Versioned {
    /// The value.
    pub value: ParameterValue,
    /// SSM's version of the parameter (1 when created, +1 on every write).
    pub version: i64,
}

/// Why an SSM call failed.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// SSM did not answer, or refused the call (network, throttling, permissions).
    #[error("SSM {operation} on {parameter}: {detail}")]
    Call {
        /// `GetParameter` or `PutParameter`.
        operation: &'static str,
        /// The parameter name.
        parameter: String,
        /// The error code and message, or the transport error.
        detail: String,
    },
    /// The parameter holds something that is not a cutover value.
    #[error("SSM parameter {parameter} version {version}: {reason}")]
    Corrupt {
        /// The parameter name.
        parameter: String,
        /// The version read.
        version: i64,
        /// What is wrong.
        reason: String,
    },
}

/// A client bound to the one parameter.
#[derive(Debug, Clone)]
pub struct SsmStore {
    client: aws_sdk_ssm::Client,
    parameter: String,
}

impl SsmStore {
    /// A client from the AWS chain (credentials, region), with `region` and
    /// `endpoint_url` on top when not empty; `credentials` replaces the chain's (tests).
    pub async fn new(
        parameter: &str,
        region: &str,
        endpoint_url: &str,
        credentials: Option<SharedCredentialsProvider>,
    ) -> SsmStore {
        let mut loader = aws_config::defaults(BehaviorVersion::latest())
            .retry_config(RetryConfig::standard().with_max_attempts(2))
            .timeout_config(
                TimeoutConfig::builder()
                    .operation_timeout(CALL_TIMEOUT)
                    .operation_attempt_timeout(CALL_TIMEOUT / 2)
                    .connect_timeout(Duration::from_secs(2))
                    .build(),
            );
        if !region.is_empty() {
            loader = loader.region(aws_config::Region::new(region.to_string()));
        }
        if !endpoint_url.is_empty() {
            loader = loader.endpoint_url(endpoint_url);
        }
        if let Some(credentials) = credentials {
            loader = loader.credentials_provider(credentials);
        }
        SsmStore {
            client: aws_sdk_ssm::Client::new(&loader.load().await),
            parameter: parameter.to_string(),
        }
    }

    /// The parameter's name.
    pub fn parameter(&self) -> &str {
        &self.parameter
    }

    /// The value and version; `None` when the parameter does not exist yet.
    pub async fn get(&self) -> Result<Option<Versioned>, StoreError> {
        let answer = self
            .client
            .get_parameter()
            .name(&self.parameter)
            .send()
            .await;
        let output = match answer {
            Ok(output) => output,
            Err(SdkError::ServiceError(err)) if err.err().is_parameter_not_found() => {
                return Ok(None);
            }
            Err(err) => return Err(self.call_error("GetParameter", &err)),
        };
        let Some(parameter) = output.parameter else {
            return Ok(None);
        };
        let version = parameter.version;
        let corrupt = |reason: String| StoreError::Corrupt {
            parameter: self.parameter.clone(),
            version,
            reason,
        };
        let text = parameter.value.unwrap_or_default();
        let value: ParameterValue =
            serde_json::from_str(&text).map_err(|err| corrupt(err.to_string()))?;
        if !value.ses_percent.is_finite() || !(0.0..=100.0).contains(&value.ses_percent) {
            return Err(corrupt(format!(
                "ses_percent {} is outside 0..=100",
                value.ses_percent
            )));
        }
        if !matches!(value.source, Source::Api | Source::Guard | Source::Config) {
            return Err(corrupt(format!(
                "source {:?} is not api, guard or config",
                value.source
            )));
        }
        Ok(Some(Versioned { value, version }))
    }

    /// Writes the value, replacing what is there; returns the new version.
    pub async fn put(&self, value: &ParameterValue) -> Result<i64, StoreError> {
        self.write(value, true)
            .await
            .map(|v| v.expect("overwrite never finds the parameter existing"))
    }

    /// Writes the value only if the parameter does not exist (PutParameter
    /// without overwrite, so two relays starting at once cannot clobber each
    /// other). `Ok(None)`: somebody else created it first.
    pub async fn create(&self, value: &ParameterValue) -> Result<Option<i64>, StoreError> {
        self.write(value, false).await
    }

    async fn write(
        &self,
        value: &ParameterValue,
        overwrite: bool,
    ) -> Result<Option<i64>, StoreError> {
        let text = serde_json::to_string(value).expect("plain struct serializes");
        let answer = self
            .client
            .put_parameter()
            .name(&self.parameter)
            .value(text)
            .r#type(ParameterType::String)
            .overwrite(overwrite)
            .send()
            .await;
        match answer {
            Ok(output) => Ok(Some(output.version)),
            Err(SdkError::ServiceError(err))
                if !overwrite && err.err().is_parameter_already_exists() =>
            {
                Ok(None)
            }
            Err(err) => Err(self.call_error("PutParameter", &err)),
        }
    }

    fn call_error<E: ProvideErrorMetadata + std::error::Error + 'static>(
        &self,
        operation: &'static str,
        err: &SdkError<E, aws_sdk_ssm::config::http::HttpResponse>,
    ) -> StoreError {
        // One sentence naming the cause (no credentials, denied, unreachable),
        // as every preflight line and the once-a-minute warning want it.
        let detail = crate::aws_error::summarize(&format!("ssm:{operation}"), err);
        StoreError::Call {
            operation,
            parameter: self.parameter.clone(),
            detail,
        }
    }
}

/// This host's name for `updated_by` (the kernel's, else `$HOSTNAME`, else `fallback`).
pub fn hostname(fallback: &str) -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .or_else(|| std::env::var("HOSTNAME").ok())
        .map(|h| h.trim().to_string())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| fallback.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parameter_json_uses_the_documented_field_names() {
        let value = ParameterValue {
            ses_percent: 50.0,
            reason: "week 2".into(),
            updated_at: "2026-12-01T08:00:00Z".into(),
            updated_by: "relay-a".into(),
            source: Source::Api,
        };
        let json: serde_json::Value = serde_json::to_value(&value).unwrap();
        assert_eq!(
            json,
            serde_json::json!({
                "ses_percent": 50.0, "reason": "week 2", "updated_at": "2026-12-01T08:00:00Z",
                "updated_by": "relay-a", "source": "api"
            })
        );
        for (source, text) in [
            (Source::Guard, "guard"),
            (Source::Config, "config"),
            (Source::Api, "api"),
        ] {
            assert_eq!(serde_json::to_value(source).unwrap(), text);
        }
    }
}

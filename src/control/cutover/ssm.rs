//! The shared cutover store: one SSM Parameter Store parameter that every
//! relay of a fleet reads every `cutover.refresh-interval` and writes on a
//! change, with the state file as the local cache of the last value seen.
//!
//! SSM has no compare-and-set and no idempotency token, so a write is sent
//! once (no SDK retry): a second attempt could land after the relay reported
//! the first as failed. A write that got no answer is reported as unknown,
//! never as failed; the cutover then reads until it knows (`super`).

use std::error::Error as _;
use std::path::{Path, PathBuf};
use std::time::Duration;

use aws_config::BehaviorVersion;
use aws_config::retry::RetryConfig;
use aws_config::timeout::TimeoutConfig;
use aws_credential_types::provider::SharedCredentialsProvider;
use aws_sdk_ssm::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_ssm::types::ParameterType;

use super::Record;
use super::store::{Observed, Store, StoreFuture, WriteError};
use crate::config::CutoverStore;

/// Bound on one SSM call: a refresh must not pile up behind a hung
/// connection, and `PUT /cutover` must answer the operator quickly.
const CALL_TIMEOUT: Duration = Duration::from_secs(5);

/// Why an SSM call failed, or what it returned is not a cutover value.
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
    /// The parameter holds something that is not a cutover value: skipped,
    /// the value in force stays.
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
    cache: PathBuf,
    refresh_interval: Duration,
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
            // Never two attempts of one write: see the module's doc.
            .retry_config(RetryConfig::disabled())
            .timeout_config(
                TimeoutConfig::builder()
                    .operation_timeout(CALL_TIMEOUT)
                    .operation_attempt_timeout(CALL_TIMEOUT)
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
            cache: PathBuf::new(),
            refresh_interval: Duration::from_secs(10),
        }
    }

    /// Caches values in `state_file` and is read every `interval`.
    pub(crate) fn caching(mut self, state_file: &Path, interval: Duration) -> SsmStore {
        self.cache = state_file.to_path_buf();
        self.refresh_interval = interval;
        self
    }

    /// The parameter's name.
    pub fn parameter(&self) -> &str {
        &self.parameter
    }

    /// The value and version; `None` when the parameter does not exist. A
    /// value written by hand without `updated_at` or `change_id` gets SSM's
    /// own time of the write and an id made of its version and that time.
    pub async fn get(&self) -> Result<Option<(Record, i64)>, StoreError> {
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
        let text = parameter.value.unwrap_or_default();
        // `ses_percent` goes through the one validation (`Percent`) here.
        let mut record = Record::from_json(&text).map_err(|err| StoreError::Corrupt {
            parameter: self.parameter.clone(),
            version,
            reason: err.to_string(),
        })?;
        let modified = parameter
            .last_modified_date
            .and_then(|d| u64::try_from(d.to_millis().ok()?).ok())
            .map(|ms| std::time::UNIX_EPOCH + Duration::from_millis(ms));
        if super::millis_of(&record.updated_at) == 0
            && let Some(modified) = modified
        {
            record.updated_at = humantime::format_rfc3339_millis(modified).to_string();
        }
        if record.change_id.is_empty() {
            record.change_id = format!("ssm-v{version}@{}", record.updated_at);
        }
        Ok(Some((record, version)))
    }

    /// Writes the value, replacing what is there; returns the new version.
    pub async fn put(&self, record: &Record) -> Result<i64, WriteError> {
        self.send(record, true)
            .await
            .map(|v| v.expect("overwrite never finds the parameter existing"))
    }

    /// Writes the value only if the parameter does not exist (PutParameter
    /// without overwrite, so two relays starting at once cannot clobber each
    /// other). `Ok(None)`: somebody else created it first.
    pub async fn create(&self, record: &Record) -> Result<Option<i64>, WriteError> {
        self.send(record, false).await
    }

    async fn send(&self, record: &Record, overwrite: bool) -> Result<Option<i64>, WriteError> {
        let text = serde_json::to_string(record).expect("plain struct serializes");
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
            Err(err) => {
                let known_unsent = sent_nothing(&err);
                let error = Box::new(self.call_error("PutParameter", &err));
                Err(if known_unsent {
                    WriteError::NotApplied(error)
                } else {
                    WriteError::Unknown(error)
                })
            }
        }
    }

    fn call_error<E: ProvideErrorMetadata + std::error::Error + 'static>(
        &self,
        operation: &'static str,
        err: &SdkError<E, aws_sdk_ssm::config::http::HttpResponse>,
    ) -> StoreError {
        // One sentence naming the cause (no credentials, denied, unreachable),
        // as every preflight line and the once-a-minute warning want it.
        let detail = crate::tools::aws_summary::summarize(&format!("ssm:{operation}"), err);
        StoreError::Call {
            operation,
            parameter: self.parameter.clone(),
            detail,
        }
    }
}

/// Whether a failed PutParameter certainly changed nothing: SSM refused it
/// (a 4xx answer), or it was never sent (built wrong, or the connection
/// could not be opened). A timeout, a connection lost after sending, a 5xx
/// or an unreadable answer may all have been applied.
fn sent_nothing<E>(err: &SdkError<E, aws_sdk_ssm::config::http::HttpResponse>) -> bool {
    match err {
        SdkError::ConstructionFailure(_) => true,
        SdkError::ServiceError(service) => service.raw().status().as_u16() < 500,
        SdkError::DispatchFailure(failure) => {
            let mut source: Option<&(dyn std::error::Error + 'static)> =
                failure.as_connector_error().and_then(|e| e.source());
            while let Some(err) = source {
                if let Some(hyper) = err.downcast_ref::<hyper_util::client::legacy::Error>() {
                    return hyper.is_connect();
                }
                source = err.source();
            }
            false
        }
        _ => false,
    }
}

impl Store for SsmStore {
    fn kind(&self) -> CutoverStore {
        CutoverStore::Ssm
    }

    fn write<'a>(&'a self, record: &'a Record) -> StoreFuture<'a, Result<Option<i64>, WriteError>> {
        Box::pin(async move { self.put(record).await.map(Some) })
    }

    fn read(&self) -> StoreFuture<'_, Result<Option<Observed>, StoreError>> {
        Box::pin(async move {
            Ok(self
                .get()
                .await?
                .map(|(record, version)| Observed { record, version }))
        })
    }

    fn cache<'a>(&'a self, record: &'a Record, version: Option<i64>) -> StoreFuture<'a, ()> {
        Box::pin(super::store::cache_to(&self.cache, record, version))
    }

    fn refresh_interval(&self) -> Option<Duration> {
        Some(self.refresh_interval)
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
    use crate::control::cutover::Source;
    use crate::message::route::Percent;

    fn put_error(status: u16) -> SdkError<std::io::Error, aws_sdk_ssm::config::http::HttpResponse> {
        let raw = aws_sdk_ssm::config::http::HttpResponse::new(
            status.try_into().unwrap(),
            aws_smithy_types::body::SdkBody::empty(),
        );
        SdkError::service_error(std::io::Error::other("refused"), raw)
    }

    #[test]
    fn only_a_refusal_or_a_request_never_sent_is_certainly_not_applied() {
        assert!(sent_nothing(&put_error(400)), "SSM refused it");
        assert!(sent_nothing(&put_error(499)));
        assert!(
            !sent_nothing(&put_error(500)),
            "a 5xx may have been applied"
        );
        assert!(!sent_nothing(&put_error(503)));
        let never_built: SdkError<std::io::Error, aws_sdk_ssm::config::http::HttpResponse> =
            SdkError::construction_failure("bad request");
        assert!(sent_nothing(&never_built));
        let timed_out: SdkError<std::io::Error, aws_sdk_ssm::config::http::HttpResponse> =
            SdkError::timeout_error("no answer");
        assert!(!sent_nothing(&timed_out));
    }

    /// A write whose connection was refused never reached SSM: certainly not
    /// applied, so a rollback reported failed is not applied later.
    #[tokio::test]
    async fn a_write_that_never_connected_is_certainly_not_applied() {
        // Bound but not listening: connecting is refused at once.
        let closed = tokio::net::TcpSocket::new_v4().unwrap();
        closed.bind("127.0.0.1:0".parse().unwrap()).unwrap();
        let port = closed.local_addr().unwrap().port();
        let credentials = SharedCredentialsProvider::new(aws_credential_types::Credentials::new(
            "test", "test", None, None, "test",
        ));
        let store = SsmStore::new(
            "/ses-relay/test",
            "ap-northeast-1",
            &format!("http://127.0.0.1:{port}"),
            Some(credentials),
        )
        .await;
        let record = Record::from_json(r#"{"ses_percent": 40}"#).unwrap();
        let err = store.put(&record).await.unwrap_err();
        assert!(matches!(err, WriteError::NotApplied(_)), "{err:?}");
        drop(closed);
    }

    #[tokio::test]
    async fn the_shared_store_is_read_every_refresh_interval() {
        let store = SsmStore::new(
            "/ses-relay/test",
            "ap-northeast-1",
            "http://127.0.0.1:9",
            None,
        )
        .await
        .caching(Path::new(""), Duration::from_secs(7));
        assert_eq!(store.refresh_interval(), Some(Duration::from_secs(7)));
        assert_eq!(store.kind(), CutoverStore::Ssm);
    }

    /// An SSM endpoint on 127.0.0.1 that answers every request with `status` and `body`.
    async fn answering(status: u16, body: &'static str) -> String {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            while let Ok((mut stream, _)) = listener.accept().await {
                let mut request = Vec::new();
                let mut buf = [0u8; 4096];
                // Headers, then as much body as Content-Length says.
                while let Ok(n) = stream.read(&mut buf).await {
                    if n == 0 {
                        break;
                    }
                    request.extend_from_slice(&buf[..n]);
                    let text = String::from_utf8_lossy(&request).to_ascii_lowercase();
                    if let Some(end) = text.find("\r\n\r\n") {
                        let length = text
                            .lines()
                            .find_map(|l| l.strip_prefix("content-length:"))
                            .and_then(|v| v.trim().parse::<usize>().ok())
                            .unwrap_or(0);
                        if request.len() >= end + 4 + length {
                            break;
                        }
                    }
                }
                let answer = format!(
                    "HTTP/1.1 {status} X\r\ncontent-type: application/x-amz-json-1.1\r\n\
                     content-length: {}\r\nconnection: close\r\n\r\n{body}",
                    body.len()
                );
                let _ = stream.write_all(answer.as_bytes()).await;
            }
        });
        format!("http://{addr}")
    }

    async fn store_at(endpoint: &str) -> SsmStore {
        let credentials = SharedCredentialsProvider::new(aws_credential_types::Credentials::new(
            "AKID", "secret", None, None, "test",
        ));
        SsmStore::new(
            "/ses-relay/test",
            "ap-northeast-1",
            endpoint,
            Some(credentials),
        )
        .await
    }

    #[tokio::test]
    async fn a_relay_that_loses_the_creation_race_reads_the_winners_value() {
        let exists = answering(
            400,
            r#"{"__type":"ParameterAlreadyExists","message":"The parameter already exists."}"#,
        )
        .await;
        let record = Record::from_json(r#"{"ses_percent": 10}"#).unwrap();
        let created = store_at(&exists).await.create(&record).await;
        assert!(matches!(created, Ok(None)), "{created:?}");
        // Overwriting never meets that answer as a race: it is a refusal.
        let put = store_at(&exists).await.put(&record).await;
        assert!(matches!(put, Err(WriteError::NotApplied(_))), "{put:?}");
    }

    #[test]
    fn updated_by_is_this_hosts_name_when_it_has_one() {
        let kernel = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap_or_default();
        if !kernel.trim().is_empty() {
            assert_eq!(hostname("fallback"), kernel.trim());
        }
    }

    #[test]
    fn parameter_json_uses_the_documented_field_names() {
        let value = Record {
            ses_percent: Percent::new(50.0).unwrap(),
            reason: "week 2".into(),
            updated_at: "2026-12-01T08:00:00.000Z".into(),
            updated_by: "relay-a".into(),
            source: Source::Api,
            change_id: "19aa-0123456789abcdef".into(),
        };
        let json: serde_json::Value = serde_json::to_value(&value).unwrap();
        assert_eq!(
            json,
            serde_json::json!({
                "ses_percent": 50.0, "reason": "week 2", "updated_at": "2026-12-01T08:00:00.000Z",
                "updated_by": "relay-a", "source": "api", "change_id": "19aa-0123456789abcdef"
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

    #[test]
    fn a_value_written_by_hand_needs_only_the_percentage_and_goes_through_the_one_check() {
        let record = Record::from_json(r#"{"ses_percent": 0}"#).unwrap();
        assert_eq!(
            (record.ses_percent, record.source),
            (Percent::ZERO, Source::Api)
        );
        for bad in [
            r#"{"ses_percent": 12.345}"#,
            r#"{"ses_percent": 1e-320}"#,
            r#"{"ses_percent": -0.0}"#,
            r#"{"ses_percent": "50"}"#,
            r#"{"ses_percent": 101}"#,
            r#""50""#,
            r#"50"#,
            r#"[10, "x"]"#,
            r#"{"reason": "no percentage"}"#,
        ] {
            assert!(Record::from_json(bad).is_err(), "{bad}");
        }
    }
}

//! The SES route: SES v2 `SendEmail` with raw content.
//!
//! Credentials and region come from the standard AWS chain (environment,
//! profile, instance/task/IRSA roles); nothing secret is in our config. The
//! call itself is made by [`api`] (see there why not by the SDK). Throttling,
//! server errors and failed connections are retried within `ses.timeout` for
//! the whole call; whatever is left after that becomes a temporary failure, so
//! Postfix keeps the message and retries.

pub mod api;
pub mod code;
pub mod credentials;

use std::sync::Arc;
use std::time::Duration;

use aws_config::{BehaviorVersion, SdkConfig};
use aws_sdk_sesv2::config::retry::RetryConfig;
use aws_sdk_sesv2::config::timeout::TimeoutConfig;
use aws_sdk_sesv2::config::{Region, SharedCredentialsProvider};
use bytes::Bytes;
use http_body_util::Full;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;

use self::api::{Answer, Target};
pub use self::code::SesCode;
use self::credentials::CredentialCache;
use super::rate::RateLimiter;
use super::{Accepted, BoxFuture, Deliver, Local, Transport, UpstreamError};
use crate::config::SesConfig;
use crate::message::envelope::Envelope;

/// Attempts per message (first try + retries) within `ses.timeout`.
const MAX_ATTEMPTS: u32 = 3;

/// Longest a message waits for `max-send-rate` tokens before it is deferred.
const RATE_MAX_WAIT: Duration = Duration::from_secs(5);

/// Messages up to this size are encoded and signed on the async worker (a
/// few microseconds); larger ones on a blocking thread.
const INLINE_ENCODE_LIMIT: usize = 256 * 1024;

/// Idle kept-alive connections to SES are closed after this long, under the
/// 60 s idle limit of AWS's load balancers, so a reused connection is never
/// one the far end is closing.
const POOL_IDLE_TIMEOUT: Duration = Duration::from_secs(30);

/// Why the SES route cannot start.
#[derive(Debug, thiserror::Error)]
pub enum SesSetupError {
    /// No region in the config nor in the AWS chain.
    #[error("ses.region: no region configured, and none from the AWS chain (AWS_REGION, profile)")]
    NoRegion,
    /// The endpoint is not an http(s) URL.
    #[error("ses.endpoint-url: {0}")]
    Endpoint(#[from] api::TargetError),
    /// The AWS chain has no credentials provider.
    #[error("ses: the AWS configuration has no credentials provider")]
    NoCredentials,
    /// The system's TLS roots are unusable.
    #[error("ses: TLS setup: {0}")]
    Tls(#[from] crate::connection::tls::TlsError),
}

type HttpsClient = Client<hyper_rustls::HttpsConnector<HttpConnector>, Full<Bytes>>;

/// Sends through the SES v2 API.
pub struct SesForwarder {
    http: HttpsClient,
    target: Arc<Target>,
    credentials: CredentialCache,
    configuration_set: String,
    timeout: Duration,
    limiter: Option<Arc<RateLimiter>>,
}

impl SesForwarder {
    /// Region and credentials from the AWS chain. `credentials` replaces the
    /// chain's credentials (tests against a local fake); production passes `None`.
    pub async fn new(
        config: &SesConfig,
        credentials: Option<SharedCredentialsProvider>,
    ) -> Result<SesForwarder, SesSetupError> {
        let aws = sdk_config(config, credentials).await;
        let region = aws.region().ok_or(SesSetupError::NoRegion)?.to_string();
        let endpoint = match (config.endpoint_url.as_str(), aws.endpoint_url()) {
            ("", Some(from_environment)) => from_environment.to_string(),
            ("", None) => Target::aws_endpoint(&region),
            (configured, _) => configured.to_string(),
        };
        let target = Target::new(&endpoint, &region)?;
        let provider = aws
            .credentials_provider()
            .ok_or(SesSetupError::NoCredentials)?;
        let timeout = config.timeout.0;
        let mut connector = HttpConnector::new();
        connector.enforce_http(false);
        connector.set_nodelay(true);
        connector.set_connect_timeout(Some(timeout.min(Duration::from_secs(5))));
        let tls = crate::connection::tls::client_config(true, std::path::Path::new(""))?;
        let https = hyper_rustls::HttpsConnectorBuilder::new()
            .with_tls_config(tls)
            .https_or_http()
            .enable_http1()
            .wrap_connector(connector);
        let http = Client::builder(TokioExecutor::new())
            .pool_idle_timeout(POOL_IDLE_TIMEOUT)
            .build(https);
        let credentials = CredentialCache::new(provider);
        // Asked now so the first message does not wait for the chain; a chain
        // that fails now may work later, so this is not fatal.
        if let Err(err) = credentials.identity().await {
            tracing::warn!(error = %err, "AWS credentials not available yet");
        }
        Ok(SesForwarder {
            http,
            target: Arc::new(target),
            credentials,
            configuration_set: config.configuration_set.clone(),
            timeout,
            limiter: (config.max_send_rate > 0.0)
                .then(|| Arc::new(RateLimiter::new(config.max_send_rate, RATE_MAX_WAIT))),
        })
    }
}

/// The AWS chain's view (region, credentials, endpoint from the environment),
/// with `ses.region` and `ses.endpoint-url` on top. `credentials` replaces the
/// chain's credentials (tests).
async fn sdk_config(
    config: &SesConfig,
    credentials: Option<SharedCredentialsProvider>,
) -> SdkConfig {
    let timeout = config.timeout.0;
    let mut loader = aws_config::defaults(BehaviorVersion::latest())
        .retry_config(RetryConfig::standard().with_max_attempts(MAX_ATTEMPTS))
        .timeout_config(
            TimeoutConfig::builder()
                .operation_timeout(timeout)
                .operation_attempt_timeout(timeout / MAX_ATTEMPTS)
                .connect_timeout(timeout.min(Duration::from_secs(5)))
                .build(),
        );
    if !config.region.is_empty() {
        loader = loader.region(Region::new(config.region.clone()));
    }
    if !config.endpoint_url.is_empty() {
        loader = loader.endpoint_url(&config.endpoint_url);
    }
    if let Some(credentials) = credentials {
        loader = loader.credentials_provider(credentials);
    }
    loader.load().await
}

/// An SES v2 SDK client from the AWS chain (preflight's account and identity
/// checks), with retries and timeouts bounded by `ses.timeout`.
pub async fn client(
    config: &SesConfig,
    credentials: Option<SharedCredentialsProvider>,
) -> aws_sdk_sesv2::Client {
    aws_sdk_sesv2::Client::new(&sdk_config(config, credentials).await)
}

/// How one attempt ended, when it did not end in acceptance.
struct Failed {
    error: UpstreamError,
    /// Whether another attempt may succeed without sending the message twice.
    retry: bool,
}

impl SesForwarder {
    async fn send(&self, envelope: &Envelope, message: Vec<u8>) -> Result<Accepted, UpstreamError> {
        if let Some(limiter) = &self.limiter
            && !limiter.acquire(envelope.rcpt_to.len()).await
        {
            return Err(UpstreamError::local(Local::RateLimited));
        }
        match tokio::time::timeout(self.timeout, self.attempts(envelope, message)).await {
            Ok(outcome) => outcome,
            Err(_) => Err(UpstreamError::transport(
                Transport::Timeout,
                format!("SES did not answer within {}s", self.timeout.as_secs_f32()),
            )),
        }
    }

    async fn attempts(
        &self,
        envelope: &Envelope,
        message: Vec<u8>,
    ) -> Result<Accepted, UpstreamError> {
        let fields = api::envelope_fields(envelope, &self.configuration_set);
        let body = if message.len() <= INLINE_ENCODE_LIMIT {
            api::send_email_body(&fields, &message)
        } else {
            tokio::task::spawn_blocking(move || api::send_email_body(&fields, &message))
                .await
                .map_err(|err| UpstreamError::local(Local::Request).caused_by(err))?
        };
        // The body is the only copy from here on (the message was dropped).
        let mut attempt = 1;
        loop {
            match self.attempt(body.clone()).await {
                Ok(accepted) => return Ok(accepted),
                Err(failed) if failed.retry && attempt < MAX_ATTEMPTS => {
                    tracing::debug!(attempt, error = %failed.error, "SES attempt failed; retrying");
                    tokio::time::sleep(backoff(attempt)).await;
                    attempt += 1;
                }
                Err(failed) => return Err(failed.error),
            }
        }
    }

    async fn attempt(&self, body: Bytes) -> Result<Accepted, Failed> {
        let once = |error| Failed {
            error,
            retry: false,
        };
        let identity = self
            .credentials
            .identity()
            .await
            .map_err(|err| once(UpstreamError::local(Local::Credentials).caused_by(err)))?;
        let request = if body.len() <= INLINE_ENCODE_LIMIT {
            self.target.signed_request(&identity, body)
        } else {
            let target = self.target.clone();
            tokio::task::spawn_blocking(move || target.signed_request(&identity, body))
                .await
                .unwrap_or_else(|err| Err(err.into()))
        }
        .map_err(|err| once(UpstreamError::local(Local::Request).caused_by(err)))?;
        let response = match self.http.request(request).await {
            Ok(response) => response,
            Err(err) => {
                // Not connected: the message surely did not go; otherwise it may have.
                let retry = err.is_connect();
                let error = UpstreamError::transport(
                    Transport::Network,
                    format!("cannot reach SES: {}", error_chain(&err)),
                );
                return Err(Failed { error, retry });
            }
        };
        match api::read_answer(response).await {
            Ok(Answer::Accepted(upstream_id)) => Ok(Accepted::queued(upstream_id)),
            Ok(Answer::Refused {
                status,
                code,
                message,
            }) => {
                let code = code.unwrap_or_else(|| match status.as_u16() {
                    429 => SesCode::Throttled.name().unwrap_or_default().to_string(),
                    other => format!("HTTP{other}"),
                });
                let error = UpstreamError::ses(code, message);
                let kind = error.ses_code().unwrap_or(SesCode::Other);
                if kind == SesCode::CredentialsRefused {
                    self.credentials.renew_soon();
                }
                // Refused before being taken (throttled) or failed on SES's side:
                // SES asks clients to retry both.
                let retry =
                    status.as_u16() == 429 || status.is_server_error() || kind.is_throttling();
                Err(Failed { error, retry })
            }
            Err(reason) => Err(once(UpstreamError::transport(
                Transport::Response,
                reason.to_string(),
            ))),
        }
    }
}

/// Wait before attempt `n + 1`: 100 ms, then 200 ms, with up to 50% jitter so
/// that sessions throttled together do not come back together.
fn backoff(attempt: u32) -> Duration {
    let base = Duration::from_millis(100) * 2u32.pow(attempt.saturating_sub(1).min(4));
    let jitter = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos())
        % 1000;
    base + base * jitter / 2000
}

impl Deliver for SesForwarder {
    fn deliver<'a>(
        &'a self,
        envelope: &'a Envelope,
        message: Vec<u8>,
    ) -> BoxFuture<'a, Result<Accepted, UpstreamError>> {
        Box::pin(self.send(envelope, message))
    }
}

fn error_chain(err: &dyn std::error::Error) -> String {
    let mut text = err.to_string();
    let mut source = err.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::message::forward::Retry;

    #[test]
    fn permanent_codes_bounce() {
        for code in [
            "MessageRejected",
            "MailFromDomainNotVerifiedException",
            "BadRequestException",
            "NotFoundException",
        ] {
            let err = UpstreamError::ses(code, "no");
            assert_eq!(err.retry, Retry::Permanent, "{code}");
            assert_eq!(err.reply().code, 554, "{code}");
            assert_eq!(err.reply().status.unwrap()[0], 5);
        }
    }

    #[test]
    fn temporary_codes_defer() {
        for code in [
            "Throttling",
            "TooManyRequestsException",
            "LimitExceededException",
            "SendingPausedException",
            "AccountSuspendedException",
            "InternalFailure",
            "SomethingNew",
        ] {
            let err = UpstreamError::ses(code, "later");
            assert_eq!(err.retry, Retry::Temporary, "{code}");
            assert_eq!(err.reply().code, 451, "{code}");
        }
    }

    #[test]
    fn retries_wait_longer_each_time_with_at_most_half_again_of_jitter() {
        for (attempt, base) in [(1, 100), (2, 200), (3, 400), (5, 1600), (9, 1600)] {
            let wait = backoff(attempt);
            let base = Duration::from_millis(base);
            assert!(wait >= base && wait < base * 3 / 2, "{attempt}: {wait:?}");
        }
    }

    #[test]
    fn reply_carries_ses_words() {
        let err = UpstreamError::ses("MessageRejected", "Email address is not verified.");
        assert_eq!(
            err.reply().to_string(),
            "554 5.7.1 Email address is not verified. (MessageRejected)"
        );
    }
}

#[cfg(test)]
mod scripted_tests;

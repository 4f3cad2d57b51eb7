//! The SES route: SES v2 `SendEmail` with raw content.
//!
//! Credentials and region come from the standard AWS chain (environment,
//! profile, instance/task/IRSA roles); nothing secret is in our config. The
//! SDK retries a throttled or failed attempt itself, within `ses.timeout` for
//! the whole call; whatever is left after that becomes a temporary failure, so
//! Postfix keeps the message and retries.

use std::sync::Arc;
use std::time::Duration;

use aws_config::BehaviorVersion;
use aws_sdk_sesv2::config::http::HttpResponse;
use aws_sdk_sesv2::config::retry::RetryConfig;
use aws_sdk_sesv2::config::timeout::TimeoutConfig;
use aws_sdk_sesv2::config::{Region, SharedCredentialsProvider};
use aws_sdk_sesv2::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_sesv2::operation::send_email::SendEmailError;
use aws_sdk_sesv2::primitives::Blob;
use aws_sdk_sesv2::types::{Destination, EmailContent, RawMessage};

use super::rate::RateLimiter;
use super::{Accepted, BoxFuture, DeliveryError, Forwarder};
use crate::config::SesConfig;
use crate::envelope::Envelope;

/// Attempts per call (first try + retries) the SDK makes within `ses.timeout`.
const MAX_ATTEMPTS: u32 = 3;

/// Longest a message waits for `max-send-rate` tokens before it is deferred.
const RATE_MAX_WAIT: Duration = Duration::from_secs(5);

/// Sends through the SES v2 API.
pub struct SesForwarder {
    client: aws_sdk_sesv2::Client,
    configuration_set: String,
    timeout: Duration,
    limiter: Option<Arc<RateLimiter>>,
}

impl SesForwarder {
    /// Builds the client from the AWS chain. `credentials` replaces the chain's
    /// credentials (tests against a local fake); production passes `None`.
    pub async fn new(
        config: &SesConfig,
        credentials: Option<SharedCredentialsProvider>,
    ) -> SesForwarder {
        SesForwarder {
            client: client(config, credentials).await,
            configuration_set: config.configuration_set.clone(),
            timeout: config.timeout.0,
            limiter: (config.max_send_rate > 0.0)
                .then(|| Arc::new(RateLimiter::new(config.max_send_rate, RATE_MAX_WAIT))),
        }
    }
}

/// An SES v2 client from the AWS chain, with retries and timeouts bounded by
/// `ses.timeout`. `credentials` replaces the chain's credentials (tests).
pub async fn client(
    config: &SesConfig,
    credentials: Option<SharedCredentialsProvider>,
) -> aws_sdk_sesv2::Client {
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
    aws_sdk_sesv2::Client::new(&loader.load().await)
}

impl SesForwarder {
    async fn send(&self, envelope: &Envelope, message: Vec<u8>) -> Result<Accepted, DeliveryError> {
        if let Some(limiter) = &self.limiter
            && !limiter.acquire(envelope.rcpt_to.len()).await
        {
            return Err(DeliveryError::temporary(
                [4, 7, 0],
                "max-send-rate",
                "Sending rate limit of this relay reached, try again later",
            ));
        }
        let raw = RawMessage::builder()
            .data(Blob::new(message))
            .build()
            .map_err(|err| DeliveryError::temporary([4, 3, 0], "request", err.to_string()))?;
        let request = self
            .client
            .send_email()
            // Bcc-only recipients are in the envelope only: every one goes in Destination.
            .destination(
                Destination::builder()
                    .set_to_addresses(Some(envelope.rcpt_to.clone()))
                    .build(),
            )
            .content(EmailContent::builder().raw(raw).build())
            .configuration_set_name(&self.configuration_set)
            // The null sender has no address; SES then takes the From header.
            .set_from_email_address(
                (!envelope.mail_from.is_empty()).then(|| envelope.mail_from.clone()),
            );
        match tokio::time::timeout(self.timeout, request.send()).await {
            Ok(Ok(output)) => Ok(Accepted {
                upstream_id: output.message_id.unwrap_or_default(),
            }),
            Ok(Err(err)) => Err(sdk_error(err)),
            Err(_) => Err(DeliveryError::temporary(
                [4, 4, 1],
                "timeout",
                format!("SES did not answer within {}s", self.timeout.as_secs_f32()),
            )),
        }
    }
}

impl Forwarder for SesForwarder {
    fn deliver<'a>(
        &'a self,
        envelope: &'a Envelope,
        message: Vec<u8>,
    ) -> BoxFuture<'a, Result<Accepted, DeliveryError>> {
        Box::pin(self.send(envelope, message))
    }
}

fn sdk_error(err: SdkError<SendEmailError, HttpResponse>) -> DeliveryError {
    match &err {
        SdkError::ServiceError(service) => {
            let inner = service.err();
            classify(
                inner.code(),
                inner.message().unwrap_or("SES refused the message"),
            )
        }
        SdkError::TimeoutError(_) => {
            DeliveryError::temporary([4, 4, 1], "timeout", "SES call timed out")
        }
        SdkError::DispatchFailure(_) => DeliveryError::temporary(
            [4, 4, 1],
            "network",
            format!("cannot reach SES: {}", error_chain(&err)),
        ),
        SdkError::ResponseError(_) => DeliveryError::temporary(
            [4, 4, 2],
            "response",
            format!("unreadable SES response: {}", error_chain(&err)),
        ),
        _ => DeliveryError::temporary([4, 3, 0], "sdk", error_chain(&err)),
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

/// Maps an SES error code to temporary or permanent, with an enhanced status
/// code. Unknown codes (service 5xx, new codes) are temporary: a wrong deferral
/// costs a retry, a wrong bounce loses a message for good.
pub fn classify(code: Option<&str>, message: &str) -> DeliveryError {
    let code = code.unwrap_or("Unknown");
    match code {
        "MessageRejected" => DeliveryError::permanent([5, 7, 1], code, message),
        "MailFromDomainNotVerifiedException" | "MailFromDomainNotVerified" => {
            DeliveryError::permanent([5, 7, 1], code, message)
        }
        "BadRequestException" | "BadRequest" => DeliveryError::permanent([5, 6, 0], code, message),
        "NotFoundException" | "NotFound" => DeliveryError::permanent([5, 3, 0], code, message),
        "Throttling" | "ThrottlingException" | "TooManyRequestsException" | "TooManyRequests" => {
            DeliveryError::temporary([4, 4, 5], code, message)
        }
        "LimitExceededException" | "LimitExceeded" => {
            DeliveryError::temporary([4, 4, 5], code, message)
        }
        "SendingPausedException"
        | "SendingPaused"
        | "AccountSuspendedException"
        | "AccountSuspended" => DeliveryError::temporary([4, 7, 0], code, message),
        _ => DeliveryError::temporary([4, 3, 0], code, message),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::forward::Retry;

    #[test]
    fn permanent_codes_bounce() {
        for code in [
            "MessageRejected",
            "MailFromDomainNotVerifiedException",
            "BadRequestException",
            "NotFoundException",
        ] {
            let err = classify(Some(code), "no");
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
            let err = classify(Some(code), "later");
            assert_eq!(err.retry, Retry::Temporary, "{code}");
            assert_eq!(err.reply().code, 451, "{code}");
        }
        assert_eq!(classify(None, "x").reply().code, 451);
    }

    #[test]
    fn reply_carries_ses_words() {
        let err = classify(Some("MessageRejected"), "Email address is not verified.");
        assert_eq!(
            err.reply().to_string(),
            "554 5.7.1 Email address is not verified. (MessageRejected)"
        );
    }
}

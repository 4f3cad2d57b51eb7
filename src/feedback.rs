//! SES's own events, read from the SQS queue that the configuration set's
//! event destination fills (SNS → SQS), counted
//! (`ses_relay_ses_events_total{type}`) and handed to the rollback guard.
//!
//! Bodies are SNS-wrapped (`{"Type":"Notification","Message":"<json>"}`) or
//! raw (SNS raw message delivery): configuration-set events carry `eventType`,
//! identity notifications `notificationType`. Each message is deleted once
//! counted; one that cannot be parsed is logged and deleted too, so a poison
//! message is not received again and again.

use std::sync::Arc;
use std::time::Duration;

use aws_config::BehaviorVersion;
use aws_sdk_sqs::config::http::HttpResponse;
use aws_sdk_sqs::config::timeout::TimeoutConfig;
use aws_sdk_sqs::config::{Region, SharedCredentialsProvider};
use aws_sdk_sqs::error::{DisplayErrorContext, ProvideErrorMetadata, SdkError};
use aws_sdk_sqs::operation::get_queue_attributes::GetQueueAttributesError;
use aws_sdk_sqs::types::{DeleteMessageBatchRequestEntry, QueueAttributeName};
use serde_json::Value;

use crate::config::Config;
use crate::guard::EventKind;
use crate::relay::Relay;

/// SQS long polling waits at most 20 s.
const MAX_WAIT: Duration = Duration::from_secs(20);

/// SQS hands out at most 10 messages per receive.
const BATCH: i32 = 10;

/// One SES event, as far as the relay cares.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SesEvent {
    /// `Send`: SES took the message.
    Send,
    /// `Delivery`.
    Delivery,
    /// `Bounce` with `bounceType` `Permanent`.
    PermanentBounce,
    /// `Bounce` of another type (`Transient`, `Undetermined`).
    TransientBounce,
    /// `Complaint`.
    Complaint,
    /// `Reject` (SES's virus scan).
    Reject,
    /// `DeliveryDelay`.
    DeliveryDelay,
    /// Anything else (`Open`, `Click`, `Subscription`, SNS's own messages).
    Other,
}

impl SesEvent {
    /// The `type` label.
    pub fn label(self) -> &'static str {
        match self {
            SesEvent::Send => "send",
            SesEvent::Delivery => "delivery",
            SesEvent::PermanentBounce => "bounce",
            SesEvent::TransientBounce => "transient_bounce",
            SesEvent::Complaint => "complaint",
            SesEvent::Reject => "reject",
            SesEvent::DeliveryDelay => "delivery_delay",
            SesEvent::Other => "other",
        }
    }

    /// What the guard's ratios count.
    pub fn guard_kind(self) -> Option<EventKind> {
        match self {
            SesEvent::Send => Some(EventKind::Send),
            SesEvent::PermanentBounce => Some(EventKind::Bounce),
            SesEvent::Complaint => Some(EventKind::Complaint),
            _ => None,
        }
    }
}

/// Why a message body is not an SES event.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ParseError {
    /// Not JSON (or the SNS `Message` is not).
    #[error("not JSON: {0}")]
    Json(String),
    /// JSON without `eventType` / `notificationType`.
    #[error("neither eventType nor notificationType")]
    NoType,
}

/// Parses one SQS message body.
pub fn parse(body: &str) -> Result<SesEvent, ParseError> {
    let value: Value = serde_json::from_str(body).map_err(|e| ParseError::Json(e.to_string()))?;
    let event = match value.get("Type").and_then(Value::as_str) {
        Some("Notification") => {
            let message = value
                .get("Message")
                .and_then(Value::as_str)
                .ok_or(ParseError::NoType)?;
            serde_json::from_str(message).map_err(|e| ParseError::Json(e.to_string()))?
        }
        // SNS's subscription handshake and the like: not an SES event.
        Some(_) if value.get("eventType").is_none() => return Ok(SesEvent::Other),
        _ => value,
    };
    let kind = event
        .get("eventType")
        .or_else(|| event.get("notificationType"))
        .and_then(Value::as_str)
        .ok_or(ParseError::NoType)?;
    Ok(match kind {
        "Send" => SesEvent::Send,
        "Delivery" => SesEvent::Delivery,
        "Bounce" => {
            // SES names every bounce Permanent, Transient or Undetermined; a
            // bounce that names no type is taken as permanent, the side that
            // rolls back rather than the side that keeps sending into bounces.
            let permanent = event
                .pointer("/bounce/bounceType")
                .and_then(Value::as_str)
                .is_none_or(|t| t == "Permanent");
            if permanent {
                SesEvent::PermanentBounce
            } else {
                SesEvent::TransientBounce
            }
        }
        "Complaint" => SesEvent::Complaint,
        "Reject" => SesEvent::Reject,
        "DeliveryDelay" => SesEvent::DeliveryDelay,
        _ => SesEvent::Other,
    })
}

/// An SQS client from the AWS chain, `ses.region` and `feedback.endpoint-url`
/// on top; `credentials` replaces the chain's (tests).
pub async fn client(
    config: &Config,
    credentials: Option<SharedCredentialsProvider>,
) -> aws_sdk_sqs::Client {
    let wait = long_poll(config);
    let mut loader = aws_config::defaults(BehaviorVersion::latest()).timeout_config(
        TimeoutConfig::builder()
            .operation_timeout(wait + Duration::from_secs(10))
            .connect_timeout(Duration::from_secs(5))
            .build(),
    );
    if !config.ses.region.is_empty() {
        loader = loader.region(Region::new(config.ses.region.clone()));
    }
    if !config.feedback.endpoint_url.is_empty() {
        loader = loader.endpoint_url(&config.feedback.endpoint_url);
    }
    if let Some(credentials) = credentials {
        loader = loader.credentials_provider(credentials);
    }
    aws_sdk_sqs::Client::new(&loader.load().await)
}

/// How long each receive waits: `feedback.poll-interval`, at most SQS's 20 s.
pub fn long_poll(config: &Config) -> Duration {
    config.feedback.poll_interval.0.min(MAX_WAIT)
}

/// An SQS error in a line: code and message when SQS said them.
fn sqs_error<E: ProvideErrorMetadata + std::error::Error + 'static>(
    err: &aws_sdk_sqs::error::SdkError<E, aws_sdk_sqs::config::http::HttpResponse>,
) -> String {
    match (err.code(), err.message()) {
        (Some(code), Some(message)) => format!("{code}: {message}"),
        (Some(code), None) => code.to_string(),
        _ => format!("{}", DisplayErrorContext(err)),
    }
}

/// The queue did not answer `preflight`'s GetQueueAttributes.
#[derive(Debug, thiserror::Error)]
// A preflight line: one short sentence naming the cause.
#[error("{}", crate::aws_error::summarize("sqs:GetQueueAttributes", .0))]
pub struct QueueCheckError(
    /// SQS's answer.
    pub SdkError<GetQueueAttributesError, HttpResponse>,
);

/// `preflight`: the queue answers GetQueueAttributes; returns how many messages wait.
pub async fn check_queue(
    client: &aws_sdk_sqs::Client,
    queue_url: &str,
) -> Result<String, QueueCheckError> {
    let answer = client
        .get_queue_attributes()
        .queue_url(queue_url)
        .attribute_names(QueueAttributeName::ApproximateNumberOfMessages)
        .send()
        .await
        .map_err(QueueCheckError)?;
    let waiting = answer
        .attributes()
        .and_then(|a| a.get(&QueueAttributeName::ApproximateNumberOfMessages))
        .map_or("?", String::as_str)
        .to_string();
    Ok(waiting)
}

/// Reads the queue until shutdown.
pub async fn run(
    relay: Arc<Relay>,
    client: aws_sdk_sqs::Client,
    queue_url: String,
    wait: Duration,
) {
    tracing::info!(queue = %queue_url, "reading SES events");
    let mut failing = false;
    loop {
        let receive = client
            .receive_message()
            .queue_url(&queue_url)
            .max_number_of_messages(BATCH)
            .wait_time_seconds(wait.as_secs() as i32)
            .send();
        let answer = tokio::select! {
            _ = relay.shutdown.triggered() => return,
            answer = receive => answer,
        };
        let messages = match answer {
            Ok(answer) => {
                if failing {
                    tracing::info!(queue = %queue_url, "SES event queue answers again");
                    failing = false;
                }
                answer.messages.unwrap_or_default()
            }
            Err(err) => {
                if !failing {
                    tracing::warn!(queue = %queue_url, error = %sqs_error(&err), "cannot read SES events; retrying");
                    failing = true;
                }
                tokio::select! {
                    _ = relay.shutdown.triggered() => return,
                    _ = tokio::time::sleep(wait.max(Duration::from_secs(1))) => {}
                }
                continue;
            }
        };
        if messages.is_empty() {
            continue;
        }
        let mut done = Vec::with_capacity(messages.len());
        for (i, message) in messages.iter().enumerate() {
            match parse(message.body().unwrap_or("")) {
                Ok(event) => count(&relay, event),
                Err(err) => {
                    crate::metrics::ses_event("malformed");
                    tracing::warn!(
                        message_id = message.message_id().unwrap_or(""),
                        error = %err,
                        "SES event queue: not an SES event; deleted"
                    );
                }
            }
            if let Some(handle) = message.receipt_handle() {
                let entry = DeleteMessageBatchRequestEntry::builder()
                    .id(i.to_string())
                    .receipt_handle(handle)
                    .build();
                done.extend(entry.ok());
            }
        }
        let deleted = client
            .delete_message_batch()
            .queue_url(&queue_url)
            .set_entries(Some(done))
            .send()
            .await;
        match deleted {
            Ok(answer) if !answer.failed().is_empty() => tracing::warn!(
                failed = answer.failed().len(),
                "SES event queue: some messages not deleted; they will be counted again"
            ),
            Ok(_) => {}
            Err(err) => tracing::warn!(
                error = %sqs_error(&err),
                "SES event queue: delete failed; these events will be counted again"
            ),
        }
    }
}

/// Counts one event and lets the guard judge it.
fn count(relay: &Relay, event: SesEvent) {
    crate::metrics::ses_event(event.label());
    if let Some(kind) = event.guard_kind()
        && let Some(trip) = relay.guard.ses_event(kind)
    {
        relay.guard.enforce(&trip);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const BOUNCE: &str = r#"{"eventType":"Bounce","bounce":{"bounceType":"Permanent","bounceSubType":"General","bouncedRecipients":[{"emailAddress":"a@example.net"}]},"mail":{"messageId":"x"}}"#;

    #[test]
    fn raw_and_sns_wrapped_bodies_parse() {
        assert_eq!(parse(BOUNCE), Ok(SesEvent::PermanentBounce));
        let wrapped = serde_json::json!({
            "Type": "Notification",
            "MessageId": "1",
            "TopicArn": "arn:aws:sns:ap-northeast-1:123456789012:ses-events",
            "Message": BOUNCE,
        })
        .to_string();
        assert_eq!(parse(&wrapped), Ok(SesEvent::PermanentBounce));
        assert_eq!(
            parse(r#"{"eventType":"Send","mail":{}}"#),
            Ok(SesEvent::Send)
        );
        assert_eq!(
            parse(r#"{"notificationType":"Complaint","complaint":{}}"#),
            Ok(SesEvent::Complaint)
        );
        assert_eq!(
            parse(r#"{"notificationType":"Bounce","bounce":{"bounceType":"Transient"}}"#),
            Ok(SesEvent::TransientBounce)
        );
        assert_eq!(
            parse(r#"{"eventType":"Bounce","bounce":{"bounceType":"Undetermined"}}"#),
            Ok(SesEvent::TransientBounce)
        );
        assert_eq!(
            parse(r#"{"eventType":"Bounce"}"#),
            Ok(SesEvent::PermanentBounce)
        );
        assert_eq!(parse(r#"{"eventType":"Open"}"#), Ok(SesEvent::Other));
        assert_eq!(
            parse(r#"{"Type":"SubscriptionConfirmation","Message":"confirm"}"#),
            Ok(SesEvent::Other)
        );
    }

    #[test]
    fn poison_is_an_error_not_a_panic() {
        assert!(matches!(parse("not json"), Err(ParseError::Json(_))));
        assert_eq!(parse(r#"{"hello":1}"#), Err(ParseError::NoType));
        assert!(matches!(
            parse(r#"{"Type":"Notification","Message":"{broken"}"#),
            Err(ParseError::Json(_))
        ));
        assert_eq!(
            parse(r#"{"Type":"Notification","Message":5}"#),
            Err(ParseError::NoType)
        );
        assert_eq!(parse(r#"{"eventType":7}"#), Err(ParseError::NoType));
    }

    #[test]
    fn only_sends_permanent_bounces_and_complaints_reach_the_guard() {
        assert_eq!(SesEvent::Send.guard_kind(), Some(EventKind::Send));
        assert_eq!(
            SesEvent::PermanentBounce.guard_kind(),
            Some(EventKind::Bounce)
        );
        assert_eq!(SesEvent::Complaint.guard_kind(), Some(EventKind::Complaint));
        assert_eq!(SesEvent::TransientBounce.guard_kind(), None);
        assert_eq!(SesEvent::Delivery.guard_kind(), None);
    }
}

//! SES's own events, read from the SQS queue that the configuration set's
//! event destination fills (SNS → SQS), counted
//! (`ses_relay_ses_events_total{type}`) and handed to the rollback guard.
//!
//! Bodies are SNS-wrapped (`{"Type":"Notification","Message":"<json>"}`) or
//! raw (SNS raw message delivery): configuration-set events carry `eventType`,
//! identity notifications `notificationType`. Only this relay's events count
//! ([`Scope`]: its configuration set, and when set its account and SNS topic),
//! each once ([`Seen`]); anything else is counted under
//! `ses_relay_ses_events_ignored_total{reason}` and never judged. Each message
//! is deleted once read; one that cannot be parsed is logged and deleted too,
//! so a poison message is not received again and again.

mod notification;
mod seen;

pub use self::notification::{Ignored, Notification, ParseError, Scope, SesEvent, parse, read};
pub use self::seen::Seen;

use std::sync::Arc;
use std::time::Duration;

use crate::config::Config;
use crate::control::guard::Guard;
use crate::daemon::shutdown::Shutdown;
use aws_config::BehaviorVersion;
use aws_sdk_sqs::config::http::HttpResponse;
use aws_sdk_sqs::config::timeout::TimeoutConfig;
use aws_sdk_sqs::config::{Region, SharedCredentialsProvider};
use aws_sdk_sqs::error::{DisplayErrorContext, ProvideErrorMetadata, SdkError};
use aws_sdk_sqs::operation::get_queue_attributes::GetQueueAttributesError;
use aws_sdk_sqs::types::{DeleteMessageBatchRequestEntry, QueueAttributeName};

/// SQS long polling waits at most 20 s.
const MAX_WAIT: Duration = Duration::from_secs(20);

/// SQS hands out at most 10 messages per receive.
const BATCH: i32 = 10;

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
#[error("{}", crate::tools::aws_summary::summarize("sqs:GetQueueAttributes", .0))]
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

/// The SES event queue's reader: what it reads, and the one handle it
/// needs (the guard it feeds).
pub struct FeedbackReader {
    /// The SQS client.
    pub client: aws_sdk_sqs::Client,
    /// The queue.
    pub queue_url: String,
    /// The long-poll wait.
    pub wait: Duration,
    /// Whose events count.
    pub scope: Scope,
    /// The rollback guard the events feed.
    pub guard: Arc<Guard>,
}

impl FeedbackReader {
    /// Reads the queue until shutdown, counting only `scope`'s events.
    pub async fn run(self, shutdown: Shutdown) {
        let FeedbackReader {
            client,
            queue_url,
            wait,
            scope,
            guard,
        } = self;
        read_queue(&client, &queue_url, wait, &scope, &guard, &shutdown).await;
    }
}

async fn read_queue(
    client: &aws_sdk_sqs::Client,
    queue_url: &str,
    wait: Duration,
    scope: &Scope,
    guard: &Guard,
    shutdown: &Shutdown,
) {
    tracing::info!(queue = %queue_url, "reading SES events");
    let mut failing = false;
    let mut seen = Seen::new(guard.window());
    loop {
        let receive = client
            .receive_message()
            .queue_url(queue_url)
            .max_number_of_messages(BATCH)
            .wait_time_seconds(wait.as_secs() as i32)
            .send();
        let answer = tokio::select! {
            _ = shutdown.triggered() => return,
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
                    _ = shutdown.triggered() => return,
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
            match read(message.body().unwrap_or("")) {
                Ok(notification) => count(guard, scope, &mut seen, &notification),
                Err(err) => {
                    crate::metrics::ses_event("malformed");
                    crate::metrics::ses_event_ignored(Ignored::Malformed.label());
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
            .queue_url(queue_url)
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

/// Counts one event of `scope`'s, the first time it is seen, and lets the
/// guard judge it; anything else is counted as ignored, by reason.
fn count(guard: &Guard, scope: &Scope, seen: &mut Seen, notification: &Notification) {
    let admitted = scope.admits(notification).and_then(|()| {
        if seen.first(std::time::Instant::now(), notification.key) {
            Ok(())
        } else {
            Err(Ignored::Duplicate)
        }
    });
    if let Err(why) = admitted {
        crate::metrics::ses_event_ignored(why.label());
        tracing::debug!(reason = why.label(), "SES event queue: message ignored");
        return;
    }
    let event = notification.event;
    crate::metrics::ses_event(event.label());
    if let Some(kind) = event.guard_kind() {
        guard.ses_event(kind);
    }
}

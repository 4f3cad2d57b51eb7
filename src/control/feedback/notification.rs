//! One message of the feedback queue read as evidence: which SES event it
//! is, whose it says it is (configuration set, account, SNS topic), and the
//! key it is counted once by. Whoever can send to the queue writes all of it,
//! so [`Scope`] admits only this relay's events, and nothing else is judged.

use serde_json::Value;
use xxhash_rust::xxh3::xxh3_64;

use crate::config::Config;
use crate::control::guard::EventKind;

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

/// One queue message read: the event and what it claims about itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Notification {
    /// The event.
    pub event: SesEvent,
    /// `mail.tags["ses:configuration-set"]`'s value.
    pub configuration_set: Option<String>,
    /// `mail.sendingAccountId`.
    pub account: Option<String>,
    /// The SNS envelope's `TopicArn` (`None` for raw message delivery).
    pub topic: Option<String>,
    /// Counted once by: the SNS `MessageId`, or for raw delivery SES's
    /// `mail.messageId`, the event type and the recipients (hashed).
    pub key: u64,
}

/// Why a message is not counted: the `reason` label of
/// `ses_relay_ses_events_ignored_total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ignored {
    /// Another configuration set's event, or one that names none.
    ConfigurationSet,
    /// Another account's (`feedback.account-id`).
    Account,
    /// Another SNS topic's, or raw delivery when `feedback.topic-arn` is set.
    Topic,
    /// Counted already within the guard's window.
    Duplicate,
    /// Not an SES event at all.
    Malformed,
}

impl Ignored {
    /// The `reason` label.
    pub fn label(self) -> &'static str {
        let index = match self {
            Ignored::ConfigurationSet => 0,
            Ignored::Account => 1,
            Ignored::Topic => 2,
            Ignored::Duplicate => 3,
            Ignored::Malformed => 4,
        };
        crate::metrics::SES_EVENTS_IGNORED_REASONS[index]
    }
}

/// Whose events this relay counts: its configuration set's (`[ses]
/// configuration-set`), and when set, only `[feedback] account-id`'s and
/// `[feedback] topic-arn`'s. An empty value is not checked.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Scope {
    /// Expected `mail.tags["ses:configuration-set"]`.
    pub configuration_set: String,
    /// Expected `mail.sendingAccountId`.
    pub account_id: String,
    /// Expected SNS `TopicArn`.
    pub topic_arn: String,
}

impl Scope {
    /// From `[ses]` and `[feedback]`.
    pub fn from_config(config: &Config) -> Scope {
        Scope {
            configuration_set: config.ses.configuration_set.clone(),
            account_id: config.feedback.account_id.clone(),
            topic_arn: config.feedback.topic_arn.clone(),
        }
    }

    /// Whether `notification` is this relay's to count; why not, if not.
    pub fn admits(&self, notification: &Notification) -> Result<(), Ignored> {
        let matches = |expected: &str, claimed: &Option<String>| {
            expected.is_empty() || claimed.as_deref() == Some(expected)
        };
        if !matches(&self.topic_arn, &notification.topic) {
            return Err(Ignored::Topic);
        }
        if !matches(&self.account_id, &notification.account) {
            return Err(Ignored::Account);
        }
        if !matches(&self.configuration_set, &notification.configuration_set) {
            return Err(Ignored::ConfigurationSet);
        }
        Ok(())
    }
}

/// Parses one SQS message body into its event.
pub fn parse(body: &str) -> Result<SesEvent, ParseError> {
    read(body).map(|notification| notification.event)
}

/// Parses one SQS message body.
pub fn read(body: &str) -> Result<Notification, ParseError> {
    let value: Value = serde_json::from_str(body).map_err(|e| ParseError::Json(e.to_string()))?;
    let envelope_type = value.get("Type").and_then(Value::as_str);
    let topic = envelope_type
        .and(value.get("TopicArn"))
        .and_then(Value::as_str)
        .map(str::to_string);
    let sns_id = envelope_type
        .and(value.get("MessageId"))
        .and_then(Value::as_str)
        .map(|id| xxh3_64(format!("sns\0{id}").as_bytes()));
    let event = match envelope_type {
        Some("Notification") => {
            let message = value
                .get("Message")
                .and_then(Value::as_str)
                .ok_or(ParseError::NoType)?;
            serde_json::from_str(message).map_err(|e| ParseError::Json(e.to_string()))?
        }
        // SNS's subscription handshake and the like: not an SES event.
        Some(_) if value.get("eventType").is_none() => {
            return Ok(Notification {
                event: SesEvent::Other,
                configuration_set: None,
                account: None,
                topic,
                key: sns_id.unwrap_or_else(|| xxh3_64(body.as_bytes())),
            });
        }
        _ => value,
    };
    let kind = event
        .get("eventType")
        .or_else(|| event.get("notificationType"))
        .and_then(Value::as_str)
        .ok_or(ParseError::NoType)?;
    let text = |pointer: &str| {
        event
            .pointer(pointer)
            .and_then(Value::as_str)
            .map(str::to_string)
    };
    Ok(Notification {
        event: kind_of(kind, &event),
        configuration_set: text("/mail/tags/ses:configuration-set/0"),
        account: text("/mail/sendingAccountId"),
        topic,
        key: sns_id.unwrap_or_else(|| raw_key(kind, &event, body)),
    })
}

fn kind_of(kind: &str, event: &Value) -> SesEvent {
    match kind {
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
    }
}

/// Raw delivery's key: SES's message id, the event type, and the recipients
/// the event is about (one message has one Send but a Bounce per bounced
/// recipient). Without a message id, the body itself.
fn raw_key(kind: &str, event: &Value, body: &str) -> u64 {
    let Some(id) = event.pointer("/mail/messageId").and_then(Value::as_str) else {
        return xxh3_64(body.as_bytes());
    };
    let (list, field) = match kind {
        "Bounce" => ("/bounce/bouncedRecipients", Some("emailAddress")),
        "Complaint" => ("/complaint/complainedRecipients", Some("emailAddress")),
        "DeliveryDelay" => ("/deliveryDelay/delayedRecipients", Some("emailAddress")),
        "Delivery" => ("/delivery/recipients", None),
        _ => ("/mail/destination", None),
    };
    let mut key = format!("ses\0{id}\0{kind}");
    for recipient in event
        .pointer(list)
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        let address = match field {
            Some(field) => recipient.get(field),
            None => Some(recipient),
        };
        key.push('\0');
        key.push_str(address.and_then(Value::as_str).unwrap_or(""));
    }
    xxh3_64(key.as_bytes())
}

#[cfg(test)]
#[path = "notification_tests.rs"]
mod tests;

//! The envelope of one SMTP transaction, and its id.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use serde::Serialize;

use crate::message::route::Route;

/// What the client said about one message, apart from its content.
#[derive(Debug, Clone)]
pub struct Envelope {
    /// Transaction id: in the Received header, the log line and the final reply.
    pub id: String,
    /// The client's address.
    pub client: SocketAddr,
    /// The name the client gave in EHLO/HELO.
    pub helo: String,
    /// Whether the session runs over TLS.
    pub tls: bool,
    /// EHLO (true) or HELO (false).
    pub esmtp: bool,
    /// MAIL FROM, with its parameters.
    pub mail: MailFrom,
    /// Every accepted RCPT TO address, in order.
    pub rcpt_to: Vec<String>,
    /// The route chosen at the first RCPT.
    pub route: Route,
    /// SES message tags (`EmailTags`): the `[ses] tags` defaults merged with
    /// the message's own `X-SES-MESSAGE-TAGS`, set when the message is prepared.
    pub tags: Vec<MessageTag>,
}

/// What the client said in MAIL FROM: the reverse path and every parameter
/// a proxying route repeats.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MailFrom {
    /// Reverse path; empty for the null sender (bounces).
    pub address: String,
    /// `SIZE=` as declared, 0 when absent.
    pub size: usize,
    /// `BODY=8BITMIME`.
    pub body_8bit: bool,
    /// `SMTPUTF8`.
    pub smtputf8: bool,
}

/// One SES message tag, serialized as SendEmail's `{"Name": .., "Value": ..}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct MessageTag {
    /// Tag name.
    pub name: String,
    /// Tag value.
    pub value: String,
}

/// Longest tag name or value SES accepts (SES v2 API reference, `MessageTag`).
pub const MAX_TAG_LENGTH: usize = 256;

/// Most tags one message may carry; the rest are dropped.
pub const MAX_TAGS: usize = 50;

/// Why SES would refuse a tag name or value, if it would: SES accepts only
/// ASCII letters, digits, `_` and `-`, 1 to 256 of them.
pub fn tag_text_problem(text: &str) -> Option<&'static str> {
    if text.is_empty() {
        Some("is empty")
    } else if text.len() > MAX_TAG_LENGTH {
        Some("is longer than 256 characters")
    } else if !text
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
    {
        Some("may hold only ASCII letters, digits, '_' and '-'")
    } else {
        None
    }
}

/// Makes transaction ids: 16 hex digits, milliseconds since the epoch then a
/// counter, so ids sort by time and do not repeat across restarts.
#[derive(Debug, Default)]
pub struct TransactionIds {
    counter: AtomicU32,
}

impl TransactionIds {
    /// A fresh id.
    pub fn next(&self) -> String {
        let millis = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_millis() as u64)
            .unwrap_or(0);
        let n = self.counter.fetch_add(1, Ordering::Relaxed) & 0xF_FFFF;
        format!("{:011X}{n:05X}", millis & 0x7FF_FFFF_FFFF)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tag_text_follows_the_ses_rules() {
        assert_eq!(tag_text_problem("campaign_2026-12"), None);
        assert_eq!(tag_text_problem(&"a".repeat(256)), None);
        for bad in [
            "",
            "a b",
            "a.b",
            "a=b",
            "ses:from",
            "\u{3042}",
            &"a".repeat(257),
        ] {
            assert!(tag_text_problem(bad).is_some(), "{bad:?}");
        }
    }

    #[test]
    fn ids_are_unique_and_fixed_width() {
        let ids = TransactionIds::default();
        let a = ids.next();
        let b = ids.next();
        assert_ne!(a, b);
        assert_eq!(a.len(), 16);
        assert!(a.chars().all(|c| c.is_ascii_hexdigit()));
    }
}

//! Delivery upstream: the [`Forwarder`] trait the routes implement, and the one
//! mapping from an upstream failure to the SMTP reply Postfix sees.
//!
//! ses-relay holds no mail: a forwarder either gets the upstream to accept the
//! message (Postfix then hears 250) or fails, temporarily (451, Postfix keeps
//! the message queued and retries) or permanently (554, Postfix bounces).

pub mod legacy;
pub mod outbox;
pub mod rate;
pub mod ses;

use std::future::Future;
use std::pin::Pin;

use crate::envelope::Envelope;
use crate::smtp::Reply;

/// A boxed future, so the trait stays object-safe.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// Delivers a prepared message upstream.
pub trait Forwarder: Send + Sync {
    /// Called at a transaction's first RCPT. A proxying route (legacy) opens
    /// its upstream transaction here and returns it, so each RCPT can be passed
    /// on; a route that accepts recipients itself (SES, outbox) returns `None`.
    /// An `Err` is the reply for this RCPT (the upstream refused MAIL, or is unreachable).
    fn open<'a>(
        &'a self,
        _mail: &'a MailRequest,
    ) -> BoxFuture<'a, Result<Option<Box<dyn Proxy>>, Reply>> {
        Box::pin(async { Ok(None) })
    }

    /// Sends `message` (final bytes: Received, DKIM and route headers already added).
    fn deliver<'a>(
        &'a self,
        envelope: &'a Envelope,
        message: Vec<u8>,
    ) -> BoxFuture<'a, Result<Accepted, DeliveryError>>;
}

/// An upstream SMTP transaction opened at the first RCPT, whose replies are
/// passed back to the client as they are.
pub trait Proxy: Send {
    /// Passes one RCPT on; the upstream's reply is the client's reply.
    fn recipient<'a>(&'a mut self, address: &'a str) -> BoxFuture<'a, Reply>;

    /// Sends the prepared message; the upstream's final reply is the client's.
    /// Dropping a proxy without calling this aborts the upstream transaction.
    fn data(self: Box<Self>, message: Vec<u8>) -> BoxFuture<'static, Reply>;
}

/// What the client said in MAIL FROM, for a proxying route to repeat.
#[derive(Debug, Clone, Default)]
pub struct MailRequest {
    /// Reverse path; empty for the null sender.
    pub from: String,
    /// `SIZE=` as declared, 0 when absent.
    pub size: usize,
    /// `BODY=8BITMIME`.
    pub body_8bit: bool,
    /// `SMTPUTF8`.
    pub smtputf8: bool,
}

/// The upstream took the message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Accepted {
    /// The upstream's id for it (SES MessageId, outbox file id).
    pub upstream_id: String,
}

/// Whether the client should try again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Retry {
    /// Try later: 4xx.
    Temporary,
    /// Do not retry: 5xx, Postfix bounces.
    Permanent,
}

/// Why an upstream did not take a message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{code}: {message}")]
pub struct DeliveryError {
    /// Temporary or permanent.
    pub retry: Retry,
    /// Enhanced status code for the reply (RFC 3463).
    pub status: [u16; 3],
    /// Short machine-readable cause: the SES error code, `timeout`, `network`, `io`.
    pub code: String,
    /// The upstream's own words.
    pub message: String,
}

impl DeliveryError {
    /// A failure worth retrying.
    pub fn temporary(
        status: [u16; 3],
        code: impl Into<String>,
        message: impl Into<String>,
    ) -> Self {
        DeliveryError {
            retry: Retry::Temporary,
            status,
            code: code.into(),
            message: message.into(),
        }
    }

    /// A failure retrying cannot fix.
    pub fn permanent(
        status: [u16; 3],
        code: impl Into<String>,
        message: impl Into<String>,
    ) -> Self {
        DeliveryError {
            retry: Retry::Permanent,
            status,
            code: code.into(),
            message: message.into(),
        }
    }

    /// The SMTP reply for this failure: 451 for temporary, 554 for permanent.
    pub fn reply(&self) -> Reply {
        let (code, status) = match self.retry {
            Retry::Temporary => (451, [4, self.status[1], self.status[2]]),
            Retry::Permanent => (554, [5, self.status[1], self.status[2]]),
        };
        Reply::dynamic(code, status, format!("{} ({})", self.message, self.code))
    }
}

/// A forwarder for tests of route choice, where nothing is delivered.
#[cfg(test)]
pub(crate) struct Unreachable;

#[cfg(test)]
impl Forwarder for Unreachable {
    fn deliver<'a>(
        &'a self,
        _: &'a Envelope,
        _: Vec<u8>,
    ) -> BoxFuture<'a, Result<Accepted, DeliveryError>> {
        Box::pin(async { unreachable!("route-choice tests deliver nothing") })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reply_class_follows_retry_not_status() {
        let t = DeliveryError::temporary([4, 4, 5], "Throttling", "Maximum sending rate exceeded.");
        assert_eq!(
            t.reply().to_string(),
            "451 4.4.5 Maximum sending rate exceeded. (Throttling)"
        );
        // A status written with the wrong class is corrected by the retry kind.
        let p = DeliveryError::permanent(
            [4, 7, 1],
            "MessageRejected",
            "Email address is not verified.",
        );
        assert_eq!(p.reply().code, 554);
        assert_eq!(p.reply().status, Some([5, 7, 1]));
    }
}

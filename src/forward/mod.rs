//! Delivery upstream: one [`Upstream`] per route, each opening one
//! [`Transaction`] per mail transaction; [`UpstreamError`], the one shape of
//! an upstream's failure and its one SMTP reply; and [`Upstreams`], the
//! routes' upstreams.
//!
//! ses-relay holds no mail: a transaction either gets the upstream to accept
//! the message (Postfix then hears 250) or fails, temporarily (4xx, Postfix
//! keeps the message queued and retries) or permanently (5xx, Postfix bounces).

pub mod legacy;
pub mod outbox;
pub mod rate;
pub mod ses;

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use crate::disposition::Disposition;
use crate::envelope::{Envelope, MailFrom};
use crate::route::Route;
use crate::smtp::Reply;

/// A boxed future, so the traits stay object-safe.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// A route's upstream.
pub trait Upstream: Send + Sync {
    /// Opens the upstream side of a transaction, at its first RCPT. A proxying
    /// route (legacy) repeats MAIL upstream here; an `Err` is the reply to
    /// that RCPT (the upstream refused MAIL, or cannot be reached).
    fn begin<'a>(
        self: Arc<Self>,
        mail: &'a MailFrom,
    ) -> BoxFuture<'a, Result<Box<dyn Transaction>, UpstreamError>>;
}

/// One transaction open on an upstream, from the first RCPT to the end of
/// DATA. Dropping it without [`Transaction::data`] aborts it.
pub trait Transaction: Send {
    /// One RCPT: its reply is the client's (the upstream's own reply on a
    /// proxying route; SES and the outbox accept recipients themselves).
    fn recipient<'a>(&'a mut self, address: &'a str) -> BoxFuture<'a, Reply>;

    /// Sends `message` (final bytes: Received, DKIM and route headers added).
    fn data<'a>(
        self: Box<Self>,
        envelope: &'a Envelope,
        message: Vec<u8>,
    ) -> BoxFuture<'a, Result<Accepted, UpstreamError>>;
}

/// An upstream that takes a whole message in one call (SES, the outbox):
/// recipients are accepted locally, and the message goes at the end of DATA.
pub trait Deliver: Send + Sync + 'static {
    /// Sends `message` (final bytes) for `envelope`.
    fn deliver<'a>(
        &'a self,
        envelope: &'a Envelope,
        message: Vec<u8>,
    ) -> BoxFuture<'a, Result<Accepted, UpstreamError>>;
}

impl<D: Deliver> Upstream for D {
    fn begin<'a>(
        self: Arc<Self>,
        _mail: &'a MailFrom,
    ) -> BoxFuture<'a, Result<Box<dyn Transaction>, UpstreamError>> {
        Box::pin(std::future::ready(Ok(
            Box::new(Local(self)) as Box<dyn Transaction>
        )))
    }
}

/// A transaction on a [`Deliver`] upstream.
struct Local<D>(Arc<D>);

impl<D: Deliver> Transaction for Local<D> {
    fn recipient<'a>(&'a mut self, _address: &'a str) -> BoxFuture<'a, Reply> {
        Box::pin(std::future::ready(Reply::new(250, [2, 1, 5], "Ok")))
    }

    fn data<'a>(
        self: Box<Self>,
        envelope: &'a Envelope,
        message: Vec<u8>,
    ) -> BoxFuture<'a, Result<Accepted, UpstreamError>> {
        Box::pin(async move { self.0.deliver(envelope, message).await })
    }
}

/// Each route's upstream.
pub struct Upstreams {
    ses: Arc<dyn Upstream>,
    legacy: Option<Arc<dyn Upstream>>,
}

impl Upstreams {
    /// The SES route's upstream, and the legacy route's when there is one.
    pub fn new(ses: Arc<dyn Upstream>, legacy: Option<Arc<dyn Upstream>>) -> Upstreams {
        Upstreams { ses, legacy }
    }

    /// Whether a legacy route exists.
    pub fn has_legacy(&self) -> bool {
        self.legacy.is_some()
    }

    /// The upstream that delivers on `route` (SES when there is no legacy route).
    pub fn get(&self, route: Route) -> Arc<dyn Upstream> {
        match (route, &self.legacy) {
            (Route::Legacy, Some(legacy)) => legacy.clone(),
            _ => self.ses.clone(),
        }
    }
}

/// The upstream took the message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Accepted {
    /// The upstream's id for it (SES MessageId, outbox file id); `None` when
    /// the upstream's own reply is passed back (legacy).
    pub upstream_id: Option<String>,
    /// The client's reply, before the transaction id is added.
    pub reply: Reply,
}

impl Accepted {
    /// Taken under `id`: `250 2.0.0 Ok: queued as <id>`.
    pub fn queued(id: String) -> Accepted {
        Accepted {
            reply: Reply::dynamic(250, [2, 0, 0], format!("Ok: queued as {id}")),
            upstream_id: Some(id),
        }
    }

    /// Taken with this reply of the upstream's own, passed back as it is.
    pub fn passed(reply: Reply) -> Accepted {
        Accepted {
            upstream_id: None,
            reply,
        }
    }
}

/// Whether the client should try again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Retry {
    /// Try later: 4xx.
    Temporary,
    /// Do not retry: 5xx, Postfix bounces.
    Permanent,
}

/// Why an upstream did not take a message (or a transaction could not begin).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{source}")]
pub struct UpstreamError {
    /// Temporary or permanent.
    pub retry: Retry,
    /// Enhanced status code for the reply (RFC 3463).
    pub status: [u16; 3],
    /// What the upstream said.
    pub source: Cause,
}

/// What an upstream said when it did not take a message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Cause {
    /// An API's or our own failure: a short machine-readable code (the SES
    /// error code, `timeout`, `network`, `io`) and the upstream's words.
    #[error("{code}: {message}")]
    Api {
        /// Short machine-readable cause.
        code: String,
        /// The upstream's own words.
        message: String,
    },
    /// An SMTP upstream's own reply, which is the client's as it is.
    #[error("{0}")]
    Reply(Reply),
}

impl UpstreamError {
    /// A failure worth retrying.
    pub fn temporary(
        status: [u16; 3],
        code: impl Into<String>,
        message: impl Into<String>,
    ) -> Self {
        Self::api(Retry::Temporary, status, code, message)
    }

    /// A failure retrying cannot fix.
    pub fn permanent(
        status: [u16; 3],
        code: impl Into<String>,
        message: impl Into<String>,
    ) -> Self {
        Self::api(Retry::Permanent, status, code, message)
    }

    fn api(
        retry: Retry,
        status: [u16; 3],
        code: impl Into<String>,
        message: impl Into<String>,
    ) -> Self {
        UpstreamError {
            retry,
            status,
            source: Cause::Api {
                code: code.into(),
                message: message.into(),
            },
        }
    }

    /// An SMTP upstream's refusal (or a reply of ours standing for the
    /// upstream, such as "not reachable"): passed back as it is; permanent
    /// only for a 5xx.
    pub fn reply_of(reply: Reply) -> Self {
        let retry = if reply.is_permanent() {
            Retry::Permanent
        } else {
            Retry::Temporary
        };
        UpstreamError {
            retry,
            status: reply.status.unwrap_or([reply.code / 100, 0, 0]),
            source: Cause::Reply(reply),
        }
    }

    /// The machine-readable code of an API failure (`None` for an SMTP reply).
    pub fn code(&self) -> Option<&str> {
        match &self.source {
            Cause::Api { code, .. } => Some(code),
            Cause::Reply(_) => None,
        }
    }

    /// How the transaction ends: an SMTP upstream's reply by its class,
    /// otherwise deferred or rejected by the retry kind.
    pub fn disposition(&self) -> Disposition {
        match (&self.source, self.retry) {
            (Cause::Reply(reply), _) => Disposition::of_code(reply.code),
            (Cause::Api { .. }, Retry::Temporary) => Disposition::Deferred,
            (Cause::Api { .. }, Retry::Permanent) => Disposition::Rejected,
        }
    }

    /// The SMTP reply for this failure: an SMTP upstream's own reply as it is;
    /// otherwise 451 for temporary, 554 for permanent, with the status's class
    /// following the retry kind.
    pub fn reply(&self) -> Reply {
        let (code, message) = match &self.source {
            Cause::Reply(reply) => return reply.clone(),
            Cause::Api { code, message } => (code, message),
        };
        let (smtp, status) = match self.retry {
            Retry::Temporary => (451, [4, self.status[1], self.status[2]]),
            Retry::Permanent => (554, [5, self.status[1], self.status[2]]),
        };
        Reply::dynamic(smtp, status, format!("{message} ({code})"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reply_class_follows_retry_not_status() {
        let t = UpstreamError::temporary([4, 4, 5], "Throttling", "Maximum sending rate exceeded.");
        assert_eq!(
            t.reply().to_string(),
            "451 4.4.5 Maximum sending rate exceeded. (Throttling)"
        );
        // A status written with the wrong class is corrected by the retry kind.
        let p = UpstreamError::permanent(
            [4, 7, 1],
            "MessageRejected",
            "Email address is not verified.",
        );
        assert_eq!(p.reply().code, 554);
        assert_eq!(p.reply().status, Some([5, 7, 1]));
    }

    #[test]
    fn an_smtp_upstreams_reply_passes_as_it_is() {
        let full = UpstreamError::reply_of(Reply::dynamic(452, [4, 2, 2], "Mailbox full"));
        assert_eq!(full.retry, Retry::Temporary);
        assert_eq!(full.reply().to_string(), "452 4.2.2 Mailbox full");
        assert_eq!(full.code(), None);
        let unknown = UpstreamError::reply_of(Reply::dynamic(550, [5, 1, 1], "No such user"));
        assert_eq!(unknown.retry, Retry::Permanent);
        assert_eq!(unknown.status, [5, 1, 1]);
        assert_eq!(unknown.reply().to_string(), "550 5.1.1 No such user");
    }

    /// Answers with its own name as the upstream id.
    struct Named(&'static str);

    impl Deliver for Named {
        fn deliver<'a>(
            &'a self,
            _: &'a Envelope,
            _: Vec<u8>,
        ) -> BoxFuture<'a, Result<Accepted, UpstreamError>> {
            Box::pin(std::future::ready(Ok(Accepted::queued(self.0.into()))))
        }
    }

    async fn id_on(upstreams: &Upstreams, route: Route) -> Option<String> {
        let envelope = Envelope {
            id: "1".into(),
            client: "127.0.0.1:25".parse().unwrap(),
            helo: "client".into(),
            tls: false,
            esmtp: true,
            mail: MailFrom::default(),
            rcpt_to: vec!["b@example.com".into()],
            route,
            tags: Vec::new(),
        };
        let mut tx = upstreams.get(route).begin(&envelope.mail).await.unwrap();
        assert_eq!(
            tx.recipient("b@example.com").await.to_string(),
            "250 2.1.5 Ok"
        );
        tx.data(&envelope, Vec::new()).await.unwrap().upstream_id
    }

    #[tokio::test]
    async fn each_route_takes_its_upstream_and_ses_stands_in_for_a_missing_legacy() {
        let both = Upstreams::new(Arc::new(Named("ses")), Some(Arc::new(Named("legacy"))));
        assert!(both.has_legacy());
        assert_eq!(id_on(&both, Route::Ses).await.as_deref(), Some("ses"));
        assert_eq!(id_on(&both, Route::Legacy).await.as_deref(), Some("legacy"));
        let only_ses = Upstreams::new(Arc::new(Named("ses")), None);
        assert!(!only_ses.has_legacy());
        assert_eq!(
            id_on(&only_ses, Route::Legacy).await.as_deref(),
            Some("ses")
        );
    }

    #[test]
    fn dispositions_follow_the_cause() {
        let api = UpstreamError::temporary([4, 4, 1], "timeout", "SES did not answer");
        assert_eq!(api.disposition(), Disposition::Deferred);
        assert_eq!(api.code(), Some("timeout"));
        let bounce = UpstreamError::permanent([5, 7, 1], "MessageRejected", "no");
        assert_eq!(bounce.disposition(), Disposition::Rejected);
        let full = UpstreamError::reply_of(Reply::dynamic(452, [4, 2, 2], "Mailbox full"));
        assert_eq!(full.disposition(), Disposition::Deferred);
        let odd = UpstreamError::reply_of(Reply::plain(354, "go on"));
        assert_eq!(odd.disposition(), Disposition::Rejected);
        assert_eq!(odd.status, [3, 0, 0]);
    }

    #[test]
    fn an_accepted_message_is_queued_under_its_id() {
        let accepted = Accepted::queued("0100018c-aa".into());
        assert_eq!(accepted.upstream_id.as_deref(), Some("0100018c-aa"));
        assert_eq!(
            accepted.reply.to_string(),
            "250 2.0.0 Ok: queued as 0100018c-aa"
        );
    }
}

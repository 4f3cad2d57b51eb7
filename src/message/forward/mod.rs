//! Delivery upstream: one [`Upstream`] per route, each opening one
//! [`Transaction`] per mail transaction; [`UpstreamError`], the one shape of
//! an upstream's failure and its one SMTP reply; and [`Upstreams`], the
//! routes' upstreams.
//!
//! ses-relay holds no mail: a transaction either gets the upstream to accept
//! the message (Postfix then hears 250) or fails, temporarily (4xx, Postfix
//! keeps the message queued and retries) or permanently (5xx, Postfix bounces).

mod error;
pub mod legacy;
pub mod outbox;
pub mod rate;
pub mod ses;

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use crate::connection::smtp::Reply;
use crate::message::envelope::{Envelope, MailFrom};
use crate::message::route::Route;

pub use self::error::{Kind, Local, Origin, Retry, Transport, UpstreamError};

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
            Box::new(Answered(self)) as Box<dyn Transaction>
        )))
    }
}

/// A transaction on a [`Deliver`] upstream: recipients answered here.
struct Answered<D>(Arc<D>);

impl<D: Deliver> Transaction for Answered<D> {
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

#[cfg(test)]
mod tests {
    use super::*;

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
    fn an_accepted_message_is_queued_under_its_id() {
        let accepted = Accepted::queued("0100018c-aa".into());
        assert_eq!(accepted.upstream_id.as_deref(), Some("0100018c-aa"));
        assert_eq!(
            accepted.reply.to_string(),
            "250 2.0.0 Ok: queued as 0100018c-aa"
        );
    }
}

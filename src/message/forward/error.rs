//! [`UpstreamError`]: why a message was not taken, as one typed value.
//!
//! It says who failed ([`Origin`]: the upstream, or the relay itself), what
//! kind of failure it was ([`Kind`]: an SES error code parsed once into
//! [`SesCode`], a transport failure, a local failure, an SMTP upstream's own
//! reply), whether Postfix should retry ([`Retry`]), and keeps the
//! underlying error as its `source()`. The reply, the disposition, the
//! metric label and the rollback guard's reading are all matches on it.

use std::error::Error as StdError;
use std::fmt;
use std::sync::Arc;

use crate::connection::smtp::Reply;
use crate::message::disposition::Disposition;
use crate::message::forward::ses::SesCode;

/// Whether the client should try again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Retry {
    /// Try later: 4xx.
    Temporary,
    /// Do not retry: 5xx, Postfix bounces.
    Permanent,
}

/// Who failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Origin {
    /// The upstream (SES, the legacy relay): it answered no, or could not be reached.
    Upstream,
    /// The relay itself, before anything reached the upstream.
    Relay,
}

/// How the upstream could not be used.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transport {
    /// No answer within `ses.timeout`.
    Timeout,
    /// The connection failed (refused, reset, TLS).
    Network,
    /// An answer came that could not be read.
    Response,
}

/// What failed in the relay itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Local {
    /// `ses.max-send-rate`: this relay's own rate limit.
    RateLimited,
    /// DKIM signing (or the message's preparation) failed.
    Signing,
    /// No AWS credentials could be had.
    Credentials,
    /// The SES request could not be built or signed.
    Request,
    /// The outbox (dev route) could not be written.
    Outbox,
}

impl Local {
    /// The metric label and the code in the reply.
    fn label(self) -> &'static str {
        match self {
            Local::RateLimited => "max-send-rate",
            Local::Signing => "dkim",
            Local::Credentials => "credentials",
            Local::Request => "request",
            Local::Outbox => "io",
        }
    }

    /// The client's words: fixed, so no library's error text reaches it (the
    /// log line carries the cause).
    fn text(self) -> &'static str {
        match self {
            Local::RateLimited => "Sending rate limit of this relay reached, try again later",
            Local::Signing => "Local error in DKIM signing, try again later",
            Local::Credentials => "AWS credentials not available, try again later",
            Local::Request => "Local error building the SES request, try again later",
            Local::Outbox => "Local error writing the outbox, try again later",
        }
    }

    /// The enhanced status code (RFC 3463).
    fn status(self) -> [u16; 3] {
        match self {
            Local::RateLimited | Local::Credentials => [4, 7, 0],
            Local::Signing | Local::Request | Local::Outbox => [4, 3, 0],
        }
    }
}

impl Transport {
    fn label(self) -> &'static str {
        match self {
            Transport::Timeout => "timeout",
            Transport::Network => "network",
            Transport::Response => "response",
        }
    }

    fn status(self) -> [u16; 3] {
        match self {
            Transport::Timeout | Transport::Network => [4, 4, 1],
            Transport::Response => [4, 4, 2],
        }
    }
}

/// What kind of failure.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Kind {
    /// SES answered with an error code (or an HTTP status without one).
    Ses {
        /// The code's meaning.
        code: SesCode,
        /// The code as SES wrote it (`HTTP503` when it named none).
        name: String,
        /// SES's own words.
        message: String,
    },
    /// The upstream could not be used: what happened, in words.
    Transport(Transport, String),
    /// The relay's own failure.
    Local(Local),
    /// An SMTP upstream's own reply, which is the client's as it is.
    Reply(Reply),
}

/// Why an upstream did not take a message (or a transaction could not begin).
#[derive(Debug, Clone)]
pub struct UpstreamError {
    /// Temporary or permanent.
    pub retry: Retry,
    /// Enhanced status code for the reply (RFC 3463).
    pub status: [u16; 3],
    /// What failed.
    pub kind: Kind,
    /// The error underneath, when there is one (an I/O error, mail-auth's).
    cause: Option<Arc<dyn StdError + Send + Sync>>,
}

impl PartialEq for UpstreamError {
    fn eq(&self, other: &Self) -> bool {
        self.retry == other.retry && self.status == other.status && self.kind == other.kind
    }
}

impl fmt::Display for UpstreamError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.kind {
            Kind::Ses { name, message, .. } => write!(f, "{name}: {message}"),
            Kind::Transport(kind, message) => write!(f, "{}: {message}", kind.label()),
            Kind::Local(local) => {
                f.write_str(local.label())?;
                match &self.cause {
                    Some(cause) => write!(f, ": {cause}"),
                    None => Ok(()),
                }
            }
            Kind::Reply(reply) => write!(f, "{reply}"),
        }
    }
}

impl StdError for UpstreamError {
    fn source(&self) -> Option<&(dyn StdError + 'static)> {
        self.cause
            .as_deref()
            .map(|cause| cause as &(dyn StdError + 'static))
    }
}

impl UpstreamError {
    /// SES's answer with an error code: permanent or temporary, and its
    /// enhanced status, as [`SesCode`] decides. Unknown codes (service 5xx,
    /// new codes) are temporary: a wrong deferral costs a retry, a wrong
    /// bounce loses a message for good.
    pub fn ses(name: impl Into<String>, message: impl Into<String>) -> Self {
        let name = name.into();
        let code = SesCode::of(&name);
        UpstreamError {
            retry: if code.is_permanent() {
                Retry::Permanent
            } else {
                Retry::Temporary
            },
            status: code.status(),
            kind: Kind::Ses {
                code,
                name,
                message: message.into(),
            },
            cause: None,
        }
    }

    /// The upstream could not be used (temporary).
    pub fn transport(kind: Transport, message: impl Into<String>) -> Self {
        UpstreamError {
            retry: Retry::Temporary,
            status: kind.status(),
            kind: Kind::Transport(kind, message.into()),
            cause: None,
        }
    }

    /// The relay's own failure (temporary: nothing went upstream).
    pub fn local(kind: Local) -> Self {
        UpstreamError {
            retry: Retry::Temporary,
            status: kind.status(),
            kind: Kind::Local(kind),
            cause: None,
        }
    }

    /// Keeps `cause` as this error's `source()`.
    pub fn caused_by(mut self, cause: impl StdError + Send + Sync + 'static) -> Self {
        self.cause = Some(Arc::new(cause));
        self
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
            kind: Kind::Reply(reply),
            cause: None,
        }
    }

    /// Who failed.
    pub fn origin(&self) -> Origin {
        match self.kind {
            Kind::Local(_) => Origin::Relay,
            Kind::Ses { .. } | Kind::Transport(..) | Kind::Reply(_) => Origin::Upstream,
        }
    }

    /// SES's code, when SES answered with one.
    pub fn ses_code(&self) -> Option<SesCode> {
        match self.kind {
            Kind::Ses { code, .. } => Some(code),
            _ => None,
        }
    }

    /// The short label of `ses_relay_ses_errors_total{code}` and of the
    /// reply's parenthesis: SES's code as written, the transport failure,
    /// the local cause, or `smtp` for an SMTP upstream's reply.
    pub fn label(&self) -> &str {
        match &self.kind {
            Kind::Ses { name, .. } => name,
            Kind::Transport(kind, _) => kind.label(),
            Kind::Local(local) => local.label(),
            Kind::Reply(_) => "smtp",
        }
    }

    /// The label of a failure that is not an SMTP upstream's own reply (that
    /// one shows its reply code instead): the status page's error code.
    pub fn code_label(&self) -> Option<&str> {
        match self.kind {
            Kind::Reply(_) => None,
            _ => Some(self.label()),
        }
    }

    /// How the transaction ends: an SMTP upstream's reply by its class,
    /// otherwise deferred or rejected by the retry kind.
    pub fn disposition(&self) -> Disposition {
        match (&self.kind, self.retry) {
            (Kind::Reply(reply), _) => Disposition::of_code(reply.code),
            (_, Retry::Temporary) => Disposition::Deferred,
            (_, Retry::Permanent) => Disposition::Rejected,
        }
    }

    /// The SMTP reply for this failure: an SMTP upstream's own reply as it is;
    /// otherwise 451 for temporary, 554 for permanent, with the status's class
    /// following the retry kind.
    pub fn reply(&self) -> Reply {
        let message = match &self.kind {
            Kind::Reply(reply) => return reply.clone(),
            Kind::Ses { message, .. } | Kind::Transport(_, message) => message.as_str(),
            Kind::Local(local) => local.text(),
        };
        let (smtp, status) = match self.retry {
            Retry::Temporary => (451, [4, self.status[1], self.status[2]]),
            Retry::Permanent => (554, [5, self.status[1], self.status[2]]),
        };
        Reply::dynamic(smtp, status, format!("{message} ({})", self.label()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reply_class_follows_retry_not_status() {
        let t = UpstreamError::ses("Throttling", "Maximum sending rate exceeded.");
        assert_eq!(
            t.reply().to_string(),
            "451 4.4.5 Maximum sending rate exceeded. (Throttling)"
        );
        let p = UpstreamError::ses("MessageRejected", "Email address is not verified.");
        assert_eq!(p.reply().code, 554);
        assert_eq!(p.reply().status, Some([5, 7, 1]));
        assert_eq!(p.ses_code(), Some(SesCode::MessageRejected));
        let unknown = UpstreamError::ses("InternalFailure", "oops");
        assert_eq!(unknown.retry, Retry::Temporary);
        assert_eq!(
            unknown.reply().to_string(),
            "451 4.3.0 oops (InternalFailure)"
        );
    }

    #[test]
    fn an_smtp_upstreams_reply_passes_as_it_is() {
        let full = UpstreamError::reply_of(Reply::dynamic(452, [4, 2, 2], "Mailbox full"));
        assert_eq!(full.retry, Retry::Temporary);
        assert_eq!(full.reply().to_string(), "452 4.2.2 Mailbox full");
        assert_eq!(full.label(), "smtp");
        assert_eq!(full.origin(), Origin::Upstream);
        let unknown = UpstreamError::reply_of(Reply::dynamic(550, [5, 1, 1], "No such user"));
        assert_eq!(unknown.retry, Retry::Permanent);
        assert_eq!(unknown.status, [5, 1, 1]);
        assert_eq!(unknown.reply().to_string(), "550 5.1.1 No such user");
    }

    #[test]
    fn a_local_failure_is_the_relays_and_keeps_its_cause_out_of_the_reply() {
        let io = std::io::Error::other("disk <full>\r\n");
        let err = UpstreamError::local(Local::Outbox).caused_by(io);
        assert_eq!(err.origin(), Origin::Relay);
        assert_eq!(err.disposition(), Disposition::Deferred);
        assert_eq!(
            err.reply().to_string(),
            "451 4.3.0 Local error writing the outbox, try again later (io)"
        );
        assert_eq!(err.source().unwrap().to_string(), "disk <full>\r\n");
        assert_eq!(err.to_string(), "io: disk <full>\r\n");
        let limited = UpstreamError::local(Local::RateLimited);
        assert_eq!(limited.label(), "max-send-rate");
        assert_eq!(limited.reply().status, Some([4, 7, 0]));
    }

    #[test]
    fn the_error_code_shown_is_the_label_unless_an_smtp_reply_shows_its_own_code() {
        let full = UpstreamError::reply_of(Reply::dynamic(452, [4, 2, 2], "Mailbox full"));
        assert_eq!(full.code_label(), None);
        let rejected = UpstreamError::ses("MessageRejected", "no");
        assert_eq!(rejected.code_label(), Some("MessageRejected"));
        let limited = UpstreamError::local(Local::RateLimited);
        assert_eq!(limited.code_label(), Some("max-send-rate"));
    }

    #[test]
    fn dispositions_follow_the_cause() {
        let api = UpstreamError::transport(Transport::Timeout, "SES did not answer");
        assert_eq!(api.disposition(), Disposition::Deferred);
        assert_eq!(api.label(), "timeout");
        assert_eq!(
            api.reply().to_string(),
            "451 4.4.1 SES did not answer (timeout)"
        );
        let bounce = UpstreamError::ses("MessageRejected", "no");
        assert_eq!(bounce.disposition(), Disposition::Rejected);
        let full = UpstreamError::reply_of(Reply::dynamic(452, [4, 2, 2], "Mailbox full"));
        assert_eq!(full.disposition(), Disposition::Deferred);
        let odd = UpstreamError::reply_of(Reply::plain(354, "go on"));
        assert_eq!(odd.disposition(), Disposition::Rejected);
        assert_eq!(odd.status, [3, 0, 0]);
    }
}

//! How a transaction ended ([`Outcome`]), and the one place that records it
//! ([`Recorder`]): the rollback guard's evidence first (so a trip is in
//! force before the reply goes out), then the metrics (the status page's
//! window and list among them), then the transaction log line. Every transaction that reached the end of DATA, or whose
//! route could not begin at the first RCPT, is recorded here and nowhere else.

use std::net::IpAddr;
use std::time::Duration;

use super::SessionContext;
use crate::connection::smtp::Reply;
use crate::control::guard::{Guard, SesAnswer};
use crate::log::Masker;
use crate::message::disposition::Disposition;
use crate::message::envelope::Envelope;
use crate::message::forward::{Accepted, Kind, Local, UpstreamError};
use crate::message::route::Route;
use crate::metrics;

/// What the upstream said of the message.
pub(super) enum Answer {
    /// The message never reached the upstream (the client's mistake, or a
    /// failure of ours before sending).
    NotSent,
    /// Accepted; `delay` runs from the client's `Received:` date.
    Accepted(Option<Duration>),
    /// Not taken (or the transaction could not begin).
    Failed,
}

/// How a transaction ended, for the reply, the metrics, the guard and the log line.
pub(super) struct Outcome {
    pub(super) reply: Reply,
    pub(super) disposition: Disposition,
    pub(super) size: usize,
    pub(super) upstream_seconds: f64,
    pub(super) upstream_id: Option<String>,
    /// `selector._domainkey.domain` of the signature added.
    pub(super) dkim: Option<String>,
    answer: Answer,
    /// Why it failed, when it did (logged with its cause).
    error: Option<Box<UpstreamError>>,
}

impl Outcome {
    /// Refused because of what the client sent (bare CR/LF, oversize): nothing
    /// went upstream, and no success ratio, alert or rollback guard may move.
    pub(super) fn refused(reply: Reply) -> Outcome {
        Outcome::local(reply, Disposition::Refused, None)
    }

    /// Failed on our side before the message went upstream (memory, a bug):
    /// counted against the route like an upstream failure, by its reply's
    /// class; the guard does not see it.
    pub(super) fn failed(reply: Reply) -> Outcome {
        let disposition = Disposition::of_code(reply.code);
        Outcome::local(reply, disposition, None)
    }

    /// The relay's own failure before sending (DKIM signing), with its cause.
    pub(super) fn failed_locally(error: UpstreamError) -> Outcome {
        Outcome::local(error.reply(), error.disposition(), Some(Box::new(error)))
    }

    /// The route's transaction could not begin at the first RCPT.
    pub(super) fn not_begun(error: UpstreamError) -> Outcome {
        Outcome {
            answer: Answer::Failed,
            ..Outcome::local(error.reply(), error.disposition(), Some(Box::new(error)))
        }
    }

    /// What the upstream answered at the end of DATA.
    pub(super) fn delivered(
        answer: Result<Accepted, UpstreamError>,
        size: usize,
        upstream_seconds: f64,
        delay: Option<Duration>,
        dkim: Option<String>,
    ) -> Outcome {
        let (reply, disposition, upstream_id, answer, error) = match answer {
            Ok(accepted) => (
                accepted.reply,
                Disposition::Delivered,
                accepted.upstream_id,
                Answer::Accepted(delay),
                None,
            ),
            Err(err) => (
                err.reply(),
                err.disposition(),
                None,
                Answer::Failed,
                Some(Box::new(err)),
            ),
        };
        Outcome {
            reply,
            disposition,
            size,
            upstream_seconds,
            upstream_id,
            dkim,
            answer,
            error,
        }
    }

    fn local(reply: Reply, disposition: Disposition, error: Option<Box<UpstreamError>>) -> Outcome {
        Outcome {
            reply,
            disposition,
            size: 0,
            upstream_seconds: 0.0,
            upstream_id: None,
            dkim: None,
            answer: Answer::NotSent,
            error,
        }
    }

    /// What the rollback guard may judge of an SES-route transaction: only
    /// what SES (or the way to it) answered, never a refusal of the
    /// client's, a failure of ours before sending, or this relay's own rate
    /// limit.
    fn ses_answer(&self) -> Option<SesAnswer<'_>> {
        match (&self.answer, &self.error) {
            (Answer::Accepted(delay), _) => Some(SesAnswer::Accepted(*delay)),
            (Answer::Failed, Some(err)) if err.kind == Kind::Local(Local::RateLimited) => None,
            (Answer::Failed, Some(err)) => Some(SesAnswer::Failed(err)),
            (Answer::Failed, None) | (Answer::NotSent, _) => None,
        }
    }
}

/// Records finished transactions: guard, metrics, log line.
pub(super) struct Recorder<'a> {
    pub(super) masker: Masker,
    pub(super) guard: &'a Guard,
}

impl Recorder<'_> {
    /// The recorder of the sessions sharing `context`.
    pub(super) fn of(context: &SessionContext) -> Recorder<'_> {
        Recorder {
            masker: context.masker,
            guard: &context.guard,
        }
    }

    /// Records one transaction's `outcome`, `total` after it began.
    pub(super) fn record(&self, envelope: &Envelope, outcome: &Outcome, total: Duration) {
        if envelope.route == Route::Ses {
            self.feed_guard(outcome, envelope.client.ip());
        }
        if let Answer::Accepted(Some(delay)) = outcome.answer {
            metrics::delivery_delay(envelope.route.as_str(), delay.as_secs_f64());
        }
        if let (Route::Ses, Answer::Failed, Some(err)) =
            (envelope.route, &outcome.answer, &outcome.error)
        {
            metrics::ses_error(err.label());
        }
        metrics::transaction(
            envelope.route,
            outcome.disposition,
            envelope.rcpt_to.len(),
            outcome.size,
            outcome.upstream_seconds,
            total.as_secs_f64(),
        );
        metrics::finished(&metrics::Finished {
            id: &envelope.id,
            route: envelope.route,
            disposition: outcome.disposition,
            reply: &outcome.reply,
            upstream_code: outcome.error.as_deref().and_then(UpstreamError::code_label),
            upstream_time: (outcome.size > 0)
                .then(|| Duration::from_secs_f64(outcome.upstream_seconds)),
            from: &envelope.mail.address,
            rcpt_to: &envelope.rcpt_to,
            masker: self.masker,
        });
        self.log(envelope, outcome, total);
    }

    /// Hands an SES-route answer to the rollback guard, which acts on a trip
    /// at once, so the next transaction already takes the new route.
    fn feed_guard(&self, outcome: &Outcome, client: IpAddr) {
        if let Some(answer) = outcome.ses_answer() {
            self.guard.ses_answer(answer, client);
        }
    }

    fn log(&self, envelope: &Envelope, outcome: &Outcome, total: Duration) {
        let masker = self.masker;
        tracing::info!(
            id = %envelope.id,
            client = %masker.ip(envelope.client.ip()),
            from = %masker.address(&envelope.mail.address),
            rcpts = envelope.rcpt_to.len(),
            size = outcome.size,
            route = envelope.route.as_str(),
            result = outcome.disposition.as_str(),
            upstream_id = outcome.upstream_id.as_deref().unwrap_or(""),
            dkim = outcome.dkim.as_deref().unwrap_or("none"),
            // Formatted only when a log takes the line.
            reply = %Masked(&outcome.reply, masker),
            error = outcome.error.as_ref().map(|err| tracing::field::display(MaskedError(err, masker))),
            duration_ms = total.as_millis() as u64,
            "transaction"
        );
    }
}

/// A reply as the log shows it: addresses in its text masked.
struct Masked<'a>(&'a Reply, Masker);

impl std::fmt::Display for Masked<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let text = self.0.to_string();
        f.write_str(&self.1.text(&text))
    }
}

/// An error and its causes, as the log shows them: addresses masked.
struct MaskedError<'a>(&'a UpstreamError, Masker);

impl std::fmt::Display for MaskedError<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut text = self.0.to_string();
        let mut source = std::error::Error::source(self.0);
        while let Some(cause) = source {
            // A local failure's text already ends with its direct cause.
            if !text.ends_with(&cause.to_string()) {
                text.push_str(": ");
                text.push_str(&cause.to_string());
            }
            source = cause.source();
        }
        f.write_str(&self.1.text(&text))
    }
}

//! The end of DATA, in four steps every transaction takes in order:
//! refuse early what must be refused, prepare the message, deliver it on the
//! route's upstream transaction, and finish (reply, count, log). Nothing is
//! kept: the reply is the outcome (250 only once the upstream took it).

use std::borrow::Cow;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use super::{Session, State};
use crate::disposition::Disposition;
use crate::envelope::Envelope;
use crate::forward::ses::SesCode;
use crate::forward::{Accepted, Transaction, UpstreamError};
use crate::log::{LogThrottle, Masker};
use crate::metrics;
use crate::prepare::PrepareError;
use crate::relay::Relay;
use crate::route::Route;
use crate::smtp::{DataEnd, Reply};

/// A bug of ours (a panic while preparing, no upstream transaction): nothing
/// went upstream, so Postfix may retry.
const LOCAL_ERROR: Reply = Reply::new(451, [4, 3, 0], "Local error in processing, try again later");

/// Tags a sender wrote that SES would refuse: 10 lines a minute at most.
static DROPPED_TAG_LOG: LogThrottle = LogThrottle::new(
    "X-SES-MESSAGE-TAGS tag not sent to SES",
    10,
    Duration::from_secs(60),
);

/// A prepared message, ready to go upstream.
struct Ready {
    message: Vec<u8>,
    /// When the client took the message (the topmost `Received:` date at arrival).
    first_taken: Option<i64>,
    /// `selector._domainkey.domain` of the signature added.
    dkim: Option<String>,
}

impl Session {
    /// Called once the end marker has arrived.
    pub(super) async fn end_of_data(&mut self, end: DataEnd) {
        let State::Data(tx, receiver) = std::mem::replace(&mut self.state, State::Ready) else {
            return;
        };
        // The message's bytes count against smtp.max-data-memory until this returns.
        let _held = receiver.into_reservation();
        let started = Instant::now();
        let (envelope, upstream) = self.envelope(tx);
        let mut envelope = Arc::new(envelope);
        let outcome = match refuse_early(end) {
            Err(outcome) => outcome,
            Ok(message) => {
                // Replies to commands pipelined before DATA go out now, before the wait upstream.
                self.flush().await;
                match self.prepare(&mut envelope, message).await {
                    Err(outcome) => outcome,
                    Ok(ready) => self.deliver(&envelope, upstream, ready).await,
                }
            }
        };
        self.finish(&envelope, outcome, started);
    }

    /// Received, DKIM and route headers, on the signing pool.
    async fn prepare(
        &mut self,
        envelope: &mut Arc<Envelope>,
        message: Vec<u8>,
    ) -> Result<Ready, Outcome> {
        let live = self.live.clone();
        let job = envelope.clone();
        let done = self
            .relay
            .signer
            .run(move || {
                let first_taken = crate::received::first_taken(&message);
                (live.preparer.prepare(&job, message), first_taken)
            })
            .await;
        let Some((prepared, first_taken)) = done else {
            tracing::error!(id = %envelope.id, "message preparation panicked");
            return Err(Outcome::failed(LOCAL_ERROR));
        };
        let prepared = match prepared {
            Ok(prepared) => prepared,
            // Not in a shape SES takes: the client's to fix, refused before any call.
            Err(PrepareError::Refused(refusal)) => return Err(Outcome::refused(refusal.reply())),
            Err(err) => {
                tracing::error!(id = %envelope.id, error = %err, "message not prepared");
                let err = UpstreamError::temporary([4, 3, 0], "dkim", err.to_string());
                return Err(Outcome::failed(err.reply()));
            }
        };
        for dropped in &prepared.dropped_tags {
            // The header is the sender's: as many lines as it likes, unthrottled.
            if DROPPED_TAG_LOG.admit() {
                tracing::warn!(
                    id = %envelope.id,
                    tag = %self.relay.masker.text(dropped),
                    "X-SES-MESSAGE-TAGS tag not sent to SES"
                );
            }
        }
        if let Some((domain, selector)) = &prepared.signed_by {
            metrics::dkim_signature(domain, selector, prepared.sign_time.as_secs_f64());
        }
        if !prepared.tags.is_empty() {
            // The job's copy is gone by now, so this does not clone.
            Arc::make_mut(envelope).tags = prepared.tags;
        }
        Ok(Ready {
            message: prepared.message,
            first_taken,
            dkim: prepared
                .signed_by
                .map(|(d, s)| format!("{s}._domainkey.{d}")),
        })
    }

    /// Hands the message to the route's upstream transaction.
    async fn deliver(
        &mut self,
        envelope: &Envelope,
        upstream: Option<Box<dyn Transaction>>,
        ready: Ready,
    ) -> Outcome {
        // DATA needs an accepted RCPT, and only a begun transaction accepts one.
        let Some(upstream) = upstream else {
            tracing::error!(id = %envelope.id, "DATA without an upstream transaction");
            return Outcome::failed(LOCAL_ERROR);
        };
        let size = ready.message.len();
        let upstream_started = Instant::now();
        let result = upstream.data(envelope, ready.message).await;
        let upstream_seconds = upstream_started.elapsed().as_secs_f64();
        let delay = delay_since(ready.first_taken).filter(|_| result.is_ok());
        if let Some(delay) = delay {
            metrics::delivery_delay(envelope.route.as_str(), delay.as_secs_f64());
        }
        if envelope.route == Route::Ses {
            self.guard_observes(&result, delay, envelope.client.ip());
        }
        let (reply, disposition, upstream_id, upstream_code) = match result {
            Ok(accepted) => (
                accepted.reply,
                Disposition::Delivered,
                accepted.upstream_id,
                None,
            ),
            Err(err) => {
                if envelope.route == Route::Ses {
                    metrics::ses_error(err.code().unwrap_or("smtp"));
                }
                let code = err.code().map(Box::from);
                (err.reply(), err.disposition(), None, code)
            }
        };
        Outcome {
            reply,
            disposition,
            size,
            upstream_seconds,
            upstream_id,
            upstream_code,
            dkim: ready.dkim.map(String::into_boxed_str),
        }
    }

    /// Hands one SES-route upstream outcome to the rollback guard, and acts on
    /// a trip before the reply goes out, so the next transaction already
    /// takes the new route. Client refusals never get here; SES's refusal of
    /// one message for what it is counts as `rejected` for `client` (the real
    /// client, behind PROXY), never as a failure.
    fn guard_observes(
        &self,
        outcome: &Result<Accepted, UpstreamError>,
        delay: Option<Duration>,
        client: IpAddr,
    ) {
        let guard = &self.relay.guard;
        let trip = match outcome {
            Ok(_) => guard.upstream_outcome(true, delay),
            // The relay's own rate limit, not SES's answer.
            Err(err) if err.code() == Some("max-send-rate") => None,
            Err(err) => match err.code().map(|code| (code, SesCode::of(code))) {
                Some((_, kind)) if kind.refuses_the_message() => guard.upstream_rejected(client),
                // An account stop trips at once; the message still gets its 451.
                Some((code, kind)) if kind.stops_the_account() => {
                    let stop = guard.ses_stopped(code);
                    let counted = guard.upstream_outcome(false, None);
                    stop.or(counted)
                }
                _ => guard.upstream_outcome(false, None),
            },
        };
        if let Some(trip) = trip {
            guard.enforce(&trip);
        }
    }

    /// Sends the final reply (with the transaction id), counts it and logs the
    /// transaction line: every transaction that reached the end of DATA ends here.
    fn finish(&mut self, envelope: &Envelope, mut outcome: Outcome, started: Instant) {
        outcome.reply.text = Cow::Owned(format!("{} [id {}]", outcome.reply.text, envelope.id));
        record(&self.relay, envelope, &outcome, started.elapsed());
        self.write_reply(outcome.reply, "DATA");
    }
}

/// What must be refused before anything else happens: the client's own
/// mistakes, and our memory running out. `Ok` is the message.
fn refuse_early(end: DataEnd) -> Result<Vec<u8>, Outcome> {
    match end {
        DataEnd::Complete(message) => Ok(message),
        DataEnd::TooBig => Err(Outcome::refused(Reply::new(
            552,
            [5, 3, 4],
            "Message size exceeds fixed maximum message size",
        ))),
        DataEnd::BareLineEnding => Err(Outcome::refused(Reply::new(
            550,
            [5, 5, 2],
            "Message contains bare CR or LF; use CRLF line endings",
        ))),
        DataEnd::NulByte => Err(Outcome::refused(Reply::new(
            550,
            [5, 5, 2],
            "Message contains a NUL byte",
        ))),
        // The relay's memory, not the client's message: Postfix retries later.
        // Ours, not the client's: counted deferred, against the route.
        DataEnd::NoMemory => Err(Outcome::failed(Reply::new(
            452,
            [4, 3, 1],
            "Insufficient system storage, try again later",
        ))),
        DataEnd::Pending => {
            tracing::error!("end of DATA before the end marker");
            Err(Outcome::failed(LOCAL_ERROR))
        }
    }
}

/// From the client's `Received:` date (the topmost at arrival) to now (the upstream's acceptance);
/// a date in the future (clock skew) counts as no delay.
fn delay_since(first_taken: Option<i64>) -> Option<Duration> {
    let now = SystemTime::now().duration_since(UNIX_EPOCH).ok()?.as_secs();
    let first_taken = u64::try_from(first_taken?).ok()?;
    Some(Duration::from_secs(now.saturating_sub(first_taken)))
}

/// Counts one finished transaction (metrics, the status page's window and
/// list) and writes its transaction log line: the one place these happen, at the end of DATA or when the route's transaction
/// could not begin at the first RCPT.
pub(super) fn record(relay: &Relay, envelope: &Envelope, outcome: &Outcome, total: Duration) {
    let route = envelope.route.as_str();
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
        upstream_code: outcome.upstream_code.as_deref(),
        upstream_time: (outcome.size > 0)
            .then(|| Duration::from_secs_f64(outcome.upstream_seconds)),
        from: &envelope.mail.address,
        rcpt_to: &envelope.rcpt_to,
        masker: relay.masker,
    });
    let masker = relay.masker;
    tracing::info!(
        id = %envelope.id,
        client = %masker.ip(envelope.client.ip()),
        from = %masker.address(&envelope.mail.address),
        rcpts = envelope.rcpt_to.len(),
        size = outcome.size,
        route,
        result = outcome.disposition.as_str(),
        upstream_id = outcome.upstream_id.as_deref().unwrap_or(""),
        dkim = outcome.dkim.as_deref().unwrap_or("none"),
        // Formatted only when a log takes the line.
        reply = %MaskedReply(&outcome.reply, masker),
        duration_ms = total.as_millis() as u64,
        "transaction"
    );
}

/// A reply as the log shows it: addresses in its text masked.
struct MaskedReply<'a>(&'a Reply, Masker);

impl std::fmt::Display for MaskedReply<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let text = self.0.to_string();
        f.write_str(&self.1.text(&text))
    }
}

/// How a transaction ended, for the reply, the metrics and the log line.
pub(super) struct Outcome {
    reply: Reply,
    disposition: Disposition,
    size: usize,
    upstream_seconds: f64,
    upstream_id: Option<String>,
    /// SES's error code, when the upstream named one (the status page counts
    /// it). This and `dkim` are boxed strs: `Outcome` is an `Err` variant,
    /// kept under clippy's large-error bound.
    upstream_code: Option<Box<str>>,
    /// `selector._domainkey.domain` of the signature added.
    dkim: Option<Box<str>>,
}

impl Outcome {
    /// Refused because of what the client sent (bare CR/LF, oversize): nothing
    /// went upstream, and no success ratio, alert or rollback guard may move.
    fn refused(reply: Reply) -> Outcome {
        Outcome::local(reply, Disposition::Refused)
    }

    /// Failed on our side or the route's before the message went upstream
    /// (preparation, memory, the route's transaction could not begin): this
    /// counts against the route like an upstream failure, by its reply's class.
    pub(super) fn failed(reply: Reply) -> Outcome {
        let disposition = Disposition::of_code(reply.code);
        Outcome::local(reply, disposition)
    }

    fn local(reply: Reply, disposition: Disposition) -> Outcome {
        Outcome {
            reply,
            disposition,
            size: 0,
            upstream_seconds: 0.0,
            upstream_id: None,
            upstream_code: None,
            dkim: None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_delay_runs_from_the_first_received_date_and_never_below_zero() {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_secs() as i64;
        let delay = delay_since(Some(now - 600)).unwrap();
        assert!((600..=602).contains(&delay.as_secs()), "{delay:?}");
        assert_eq!(delay_since(Some(now + 3600)), Some(Duration::ZERO));
        assert_eq!(delay_since(None), None);
        assert_eq!(delay_since(Some(-1)), None);
    }
}

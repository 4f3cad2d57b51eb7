//! The end of DATA: refuse what must be refused, otherwise prepare the message,
//! hand it to the route's forwarder, and answer with the upstream's verdict.
//! Nothing is kept: the reply is the outcome (250 only once upstream took it).

use std::borrow::Cow;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use super::{Session, State};
use crate::envelope::Envelope;
use crate::forward::{DeliveryError, Retry};
use crate::metrics;
use crate::prepare::PrepareError;
use crate::server::Relay;
use crate::smtp::{DataEnd, Reply};

impl Session {
    /// Called once the end marker has arrived.
    pub(super) async fn end_of_data(&mut self, end: DataEnd) {
        let State::Data(tx, receiver) = std::mem::replace(&mut self.state, State::Ready) else {
            return;
        };
        // The message's bytes count against smtp.max-data-memory until this returns.
        let _held = receiver.into_reservation();
        let (envelope, proxy) = self.envelope(tx);
        let message = match end {
            DataEnd::Complete(message) => message,
            DataEnd::TooBig => {
                let reply = Reply::new(
                    552,
                    [5, 3, 4],
                    "Message size exceeds fixed maximum message size",
                );
                return self.finish(&envelope, Outcome::refused(reply), Instant::now());
            }
            DataEnd::BareLineEnding => {
                let reply = Reply::new(
                    550,
                    [5, 5, 2],
                    "Message contains bare CR or LF; use CRLF line endings",
                );
                return self.finish(&envelope, Outcome::refused(reply), Instant::now());
            }
            DataEnd::NulByte => {
                let reply = Reply::new(550, [5, 5, 2], "Message contains a NUL byte");
                return self.finish(&envelope, Outcome::refused(reply), Instant::now());
            }
            DataEnd::NoMemory => {
                // The relay's memory, not the client's message: Postfix retries later.
                let reply = Reply::new(
                    452,
                    [4, 3, 1],
                    "Insufficient system storage, try again later",
                );
                // Ours, not the client's: counted deferred, against the route.
                return self.finish(&envelope, Outcome::local_failure(reply), Instant::now());
            }
            DataEnd::Pending => unreachable!("end_of_data is called with an ended message"),
        };
        // Replies to commands pipelined before DATA go out now, before the wait upstream.
        self.flush().await;
        let started = Instant::now();
        let live = self.live.clone();
        let prepared = self
            .relay
            .signer
            .run(move || {
                let first_taken = crate::received::first_taken(&message);
                let prepared = live.preparer.prepare(&envelope, message);
                (envelope, (prepared, first_taken))
            })
            .await;
        let Some((mut envelope, (prepared, first_taken))) = prepared else {
            // The job panicked (a bug): nothing went upstream, so Postfix may retry.
            tracing::error!("message preparation panicked");
            let reply = Reply::new(451, [4, 3, 0], "Local error in processing, try again later");
            return self.write_reply(reply, "DATA");
        };
        let prepared = match prepared {
            Ok(prepared) => prepared,
            // Not in a shape SES takes: the client's to fix, refused before any call.
            Err(PrepareError::Refused(refusal)) => {
                return self.finish(&envelope, Outcome::refused(refusal.reply()), started);
            }
            Err(err) => {
                tracing::error!(id = %envelope.id, error = %err, "message not prepared");
                let reply = DeliveryError::temporary([4, 3, 0], "dkim", err.to_string()).reply();
                return self.finish(&envelope, Outcome::local_failure(reply), started);
            }
        };
        for dropped in &prepared.dropped_tags {
            tracing::warn!(
                id = %envelope.id,
                tag = %self.relay.masker.text(dropped),
                "X-SES-MESSAGE-TAGS tag not sent to SES"
            );
        }
        envelope.tags = prepared.tags;
        if let Some((domain, selector)) = &prepared.signed_by {
            metrics::dkim_signature(domain, selector, prepared.sign_time.as_secs_f64());
        }
        let size = prepared.message.len();
        let dkim = prepared
            .signed_by
            .map(|(d, s)| format!("{s}._domainkey.{d}"));
        let upstream_started = Instant::now();
        if let Some(proxy) = proxy {
            // A proxied route: the upstream's final reply is the client's.
            let reply = proxy.data(prepared.message).await;
            if reply.code / 100 == 2
                && let Some(delay) = delay_since(first_taken)
            {
                metrics::delivery_delay(envelope.route.as_str(), delay.as_secs_f64());
            }
            let result = match reply.code {
                200..=299 => "delivered",
                400..=499 => "deferred",
                _ => "rejected",
            };
            let outcome = Outcome {
                reply,
                result,
                size,
                upstream_seconds: upstream_started.elapsed().as_secs_f64(),
                upstream_id: None,
                dkim,
            };
            return self.finish(&envelope, outcome, started);
        }
        let forwarder = self.relay.router.forwarder(envelope.route).clone();
        let outcome = forwarder.deliver(&envelope, prepared.message).await;
        let upstream = upstream_started.elapsed().as_secs_f64();
        let delay = delay_since(first_taken).filter(|_| outcome.is_ok());
        if let Some(delay) = delay {
            metrics::delivery_delay(envelope.route.as_str(), delay.as_secs_f64());
        }
        if envelope.route == crate::route::Route::Ses {
            self.guard_observes(&outcome, delay);
        }
        let outcome = match outcome {
            Ok(accepted) => Outcome {
                reply: Reply::dynamic(
                    250,
                    [2, 0, 0],
                    format!("Ok: queued as {}", accepted.upstream_id),
                ),
                result: "delivered",
                size,
                upstream_seconds: upstream,
                upstream_id: Some(accepted.upstream_id),
                dkim,
            },
            Err(err) => {
                if envelope.route == crate::route::Route::Ses {
                    metrics::ses_error(&err.code);
                }
                Outcome {
                    reply: err.reply(),
                    result: match err.retry {
                        Retry::Temporary => "deferred",
                        Retry::Permanent => "rejected",
                    },
                    size,
                    upstream_seconds: upstream,
                    upstream_id: None,
                    dkim,
                }
            }
        };
        self.finish(&envelope, outcome, started);
    }

    /// Hands one SES-route upstream outcome to the rollback guard, and acts on
    /// a trip before the reply goes out, so the next transaction already
    /// takes the new route. Client refusals never get here.
    fn guard_observes(
        &self,
        outcome: &Result<crate::forward::Accepted, DeliveryError>,
        delay: Option<Duration>,
    ) {
        let guard = &self.relay.guard;
        let trip = match outcome {
            Ok(_) => guard.upstream_outcome(true, delay),
            // The relay's own rate limit, not SES's answer.
            Err(err) if err.code == "max-send-rate" => None,
            Err(err) => {
                // An account stop trips at once; the message still gets its 451.
                let stop = crate::forward::ses::is_account_stop(&err.code)
                    .then(|| guard.ses_stopped(&err.code))
                    .flatten();
                let counted = guard.upstream_outcome(false, None);
                stop.or(counted)
            }
        };
        if let Some(trip) = trip {
            guard.enforce(&trip, &self.relay.cutover, &self.relay.router);
        }
    }

    /// Sends the final reply (with the transaction id), counts it and logs the transaction line.
    fn finish(&mut self, envelope: &Envelope, mut outcome: Outcome, started: Instant) {
        outcome.reply.text = Cow::Owned(format!("{} [id {}]", outcome.reply.text, envelope.id));
        record(&self.relay, envelope, &outcome, started.elapsed());
        self.write_reply(outcome.reply, "DATA");
    }
}

/// From the fleet's first `Received:` date to now (the upstream's acceptance);
/// a date in the future (clock skew) counts as no delay.
fn delay_since(first_taken: Option<i64>) -> Option<Duration> {
    let now = SystemTime::now().duration_since(UNIX_EPOCH).ok()?.as_secs();
    let first_taken = u64::try_from(first_taken?).ok()?;
    Some(Duration::from_secs(now.saturating_sub(first_taken)))
}

/// Counts one finished transaction and writes its transaction log line: the
/// one place both happen, at the end of DATA or when the route could not be
/// opened at the first RCPT.
pub(super) fn record(relay: &Relay, envelope: &Envelope, outcome: &Outcome, total: Duration) {
    let route = envelope.route.as_str();
    metrics::transaction(
        route,
        outcome.result,
        envelope.rcpt_to.len(),
        outcome.size,
        outcome.upstream_seconds,
        total.as_secs_f64(),
    );
    let masker = relay.masker;
    let reply_text = outcome.reply.to_string();
    tracing::info!(
        id = %envelope.id,
        client = %masker.ip(envelope.client.ip()),
        from = %masker.address(&envelope.mail_from),
        rcpts = envelope.rcpt_to.len(),
        size = outcome.size,
        route,
        result = outcome.result,
        upstream_id = outcome.upstream_id.as_deref().unwrap_or(""),
        dkim = outcome.dkim.as_deref().unwrap_or("none"),
        reply = %masker.text(&reply_text),
        duration_ms = total.as_millis() as u64,
        "transaction"
    );
}

/// How a transaction ended, for the reply, the metrics and the log line.
pub(super) struct Outcome {
    reply: Reply,
    /// `delivered`, `deferred`, `rejected` (by the upstream, or a local failure
    /// of ours), or `refused` (the client's own mistake: bare LF, oversize).
    result: &'static str,
    size: usize,
    upstream_seconds: f64,
    upstream_id: Option<String>,
    /// `selector._domainkey.domain` of the signature added.
    dkim: Option<String>,
}

impl Outcome {
    /// Refused because of what the client sent (bare CR/LF, oversize): nothing
    /// went upstream, and no success ratio, alert or rollback guard may move.
    fn refused(reply: Reply) -> Outcome {
        Outcome {
            reply,
            result: metrics::RESULT_REFUSED,
            size: 0,
            upstream_seconds: 0.0,
            upstream_id: None,
            dkim: None,
        }
    }

    /// Failed on our side or the route's before the message went upstream
    /// (preparation, the route could not be opened): this counts against the
    /// route like an upstream failure.
    pub(super) fn local_failure(reply: Reply) -> Outcome {
        let result = if reply.is_transient() {
            "deferred"
        } else {
            "rejected"
        };
        Outcome {
            reply,
            result,
            size: 0,
            upstream_seconds: 0.0,
            upstream_id: None,
            dkim: None,
        }
    }
}

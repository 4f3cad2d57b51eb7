//! The end of DATA, in four steps every transaction takes in order:
//! refuse early what must be refused, prepare the message, deliver it on the
//! route's upstream transaction, and finish (reply, count, log). Nothing is
//! kept: the reply is the outcome (250 only once the upstream took it).

use std::borrow::Cow;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use super::outcome::{Outcome, Recorder};
use super::{Session, State};
use crate::connection::smtp::{DataEnd, Reply};
use crate::log::LogThrottle;
use crate::message::envelope::Envelope;
use crate::message::forward::{Local, Transaction, UpstreamError};
use crate::message::prepare::PrepareError;
use crate::metrics;

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
            Err(outcome) => *outcome,
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
            .context
            .signer
            .run(move || {
                let first_taken = crate::message::received::first_taken(&message);
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
                let err = UpstreamError::local(Local::Signing).caused_by(err);
                return Err(Outcome::failed_locally(err));
            }
        };
        for dropped in &prepared.dropped_tags {
            // The header is the sender's: as many lines as it likes, unthrottled.
            if DROPPED_TAG_LOG.admit() {
                tracing::warn!(
                    id = %envelope.id,
                    tag = %self.context.masker.text(dropped),
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
        upstream: Box<dyn Transaction>,
        ready: Ready,
    ) -> Outcome {
        let size = ready.message.len();
        let upstream_started = Instant::now();
        let answer = upstream.data(envelope, ready.message).await;
        let upstream_seconds = upstream_started.elapsed().as_secs_f64();
        let delay = delay_since(ready.first_taken).filter(|_| answer.is_ok());
        Outcome::delivered(answer, size, upstream_seconds, delay, ready.dkim)
    }

    /// Sends the final reply (with the transaction id), counts it and logs the
    /// transaction line: every transaction that reached the end of DATA ends here.
    fn finish(&mut self, envelope: &Envelope, mut outcome: Outcome, started: Instant) {
        outcome.reply.text = Cow::Owned(format!("{} [id {}]", outcome.reply.text, envelope.id));
        Recorder::of(&self.context).record(envelope, &outcome, started.elapsed());
        self.write_reply(outcome.reply, "DATA");
    }
}

/// What must be refused before anything else happens: the client's own
/// mistakes, and our memory running out. `Ok` is the message.
fn refuse_early(end: DataEnd) -> Result<Vec<u8>, Box<Outcome>> {
    match end {
        DataEnd::Complete(message) => Ok(message),
        DataEnd::TooBig => Err(Box::new(Outcome::refused(Reply::new(
            552,
            [5, 3, 4],
            "Message size exceeds fixed maximum message size",
        )))),
        DataEnd::BareLineEnding => Err(Box::new(Outcome::refused(Reply::new(
            550,
            [5, 5, 2],
            "Message contains bare CR or LF; use CRLF line endings",
        )))),
        DataEnd::NulByte => Err(Box::new(Outcome::refused(Reply::new(
            550,
            [5, 5, 2],
            "Message contains a NUL byte",
        )))),
        // The relay's memory, not the client's message: Postfix retries later.
        // Ours, not the client's: counted deferred, against the route.
        DataEnd::NoMemory => Err(Box::new(Outcome::failed(Reply::new(
            452,
            [4, 3, 1],
            "Insufficient system storage, try again later",
        )))),
        DataEnd::Pending => {
            tracing::error!("end of DATA before the end marker");
            Err(Box::new(Outcome::failed(LOCAL_ERROR)))
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

//! What the status page keeps of each finished transaction beyond the
//! counters: the time it spent upstream and, when it was not delivered, its
//! error code (into the [five-minute window](super::recent)) and a line in
//! the ring of the last [`KEPT`] not delivered.
//!
//! Everything enters through [`finished`], the one call the session makes
//! beside [`super::transaction`]. Addresses and reply texts go through the
//! log's [`Masker`] before they are kept: the page never shows what the
//! logs would not, and nothing unmasked stays in memory for it.

use std::collections::VecDeque;
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, SystemTime};

use super::recent;
use super::window::cut;
use crate::connection::smtp::Reply;
use crate::log::{Masker, escape_controls};
use crate::message::disposition::Disposition;
use crate::message::route::Route;

/// Transactions the ring keeps.
pub const KEPT: usize = 10;

/// Longest reply kept, in bytes (replies are bounded already; this holds
/// whatever a future path hands in).
const MAX_REPLY: usize = 512;

/// Longest (masked) address kept, in bytes: with `log.mask-pii = false` an
/// address is as long as SMTP allows.
const MAX_ADDRESS: usize = 256;

/// One finished transaction, as the session hands it over.
pub struct Finished<'a> {
    /// The transaction id (in the client's reply and the log line).
    pub id: &'a str,
    /// The route it took.
    pub route: Route,
    /// How it ended.
    pub disposition: Disposition,
    /// The final reply to the client.
    pub reply: &'a Reply,
    /// SES's error code when SES (or the relay's SES forwarder) named one.
    pub upstream_code: Option<&'a str>,
    /// Time spent upstream, when the message went there.
    pub upstream_time: Option<Duration>,
    /// MAIL FROM, unmasked (empty for the null sender).
    pub from: &'a str,
    /// The recipients, unmasked.
    pub rcpt_to: &'a [String],
    /// The log's masking rule.
    pub masker: Masker,
}

/// One transaction that was not delivered, masked as the log masks it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NotDelivered {
    /// When it ended.
    pub at: SystemTime,
    /// The transaction id.
    pub id: String,
    /// The route it took.
    pub route: Route,
    /// Deferred, rejected or refused.
    pub disposition: Disposition,
    /// The final reply, code and enhanced status code first (without the
    /// ` [id …]` the client's copy ends with).
    pub reply: String,
    /// MAIL FROM, masked.
    pub from: String,
    /// The first recipient, masked.
    pub first_rcpt: Option<String>,
    /// How many recipients it had.
    pub rcpts: usize,
}

/// The last [`KEPT`] transactions that were not delivered.
#[derive(Debug, Default)]
pub struct LastNotDelivered {
    ring: Mutex<VecDeque<NotDelivered>>,
}

impl LastNotDelivered {
    /// Keeps `entry`, dropping the oldest past [`KEPT`].
    pub fn push(&self, entry: NotDelivered) {
        let mut ring = self.ring.lock().unwrap_or_else(|p| p.into_inner());
        if ring.len() == KEPT {
            ring.pop_back();
        }
        ring.push_front(entry);
    }

    /// The transactions kept, newest first.
    pub fn newest_first(&self) -> Vec<NotDelivered> {
        let ring = self.ring.lock().unwrap_or_else(|p| p.into_inner());
        ring.iter().cloned().collect()
    }
}

/// The process-wide ring.
pub fn last_not_delivered() -> &'static LastNotDelivered {
    static LAST: OnceLock<LastNotDelivered> = OnceLock::new();
    LAST.get_or_init(LastNotDelivered::default)
}

/// The error code the window counts: SES's when it named one, else the
/// reply's code and enhanced status (`451 4.4.1`), which is what a legacy
/// relay (or the relay itself) answered.
pub fn error_code(reply: &Reply, upstream_code: Option<&str>) -> String {
    match (upstream_code, reply.status) {
        (Some(code), _) => code.to_string(),
        (None, Some([a, b, c])) => format!("{} {a}.{b}.{c}", reply.code),
        (None, None) => reply.code.to_string(),
    }
}

/// Records what the status page shows of one finished transaction.
pub fn finished(done: &Finished<'_>) {
    finished_into(done, recent(), last_not_delivered(), SystemTime::now());
}

fn finished_into(
    done: &Finished<'_>,
    window: &super::RecentWindow,
    ring: &LastNotDelivered,
    now: SystemTime,
) {
    if let Some(spent) = done.upstream_time {
        window.upstream_time(done.route, spent);
    }
    if done.disposition == Disposition::Delivered {
        return;
    }
    window.error(done.route, &error_code(done.reply, done.upstream_code));
    let masker = done.masker;
    let reply = done.reply.to_string();
    // The id the session appends to the client's reply has a column of its own.
    let suffix = format!(" [id {}]", done.id);
    let reply = reply.strip_suffix(&suffix).unwrap_or(&reply);
    let reply = escape_controls(&masker.text(reply)).into_owned();
    let address = |a: &str| cut(&escape_controls(&masker.address(a)), MAX_ADDRESS).to_string();
    ring.push(NotDelivered {
        at: now,
        id: cut(done.id, MAX_ADDRESS).to_string(),
        route: done.route,
        disposition: done.disposition,
        reply: cut(&reply, MAX_REPLY).to_string(),
        from: address(done.from),
        first_rcpt: done.rcpt_to.first().map(|r| address(r)),
        rcpts: done.rcpt_to.len(),
    });
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metrics::RecentWindow;

    fn failed<'a>(reply: &'a Reply, from: &'a str, rcpt_to: &'a [String]) -> Finished<'a> {
        Finished {
            id: "T1",
            route: Route::Ses,
            disposition: Disposition::of_code(reply.code),
            reply,
            upstream_code: None,
            upstream_time: None,
            from,
            rcpt_to,
            masker: Masker::new(true),
        }
    }

    #[test]
    fn the_ring_keeps_the_last_ten_newest_first() {
        let (window, ring) = (RecentWindow::default(), LastNotDelivered::default());
        let rcpts = vec!["b@example.com".to_string()];
        for n in 0..25u64 {
            let id = format!("T{n}");
            let text = format!("SES did not answer [id {id}]");
            let reply = Reply::dynamic(451, [4, 4, 1], text);
            let done = Finished {
                id: &id,
                ..failed(&reply, "a@goo.ne.jp", &rcpts)
            };
            finished_into(&done, &window, &ring, SystemTime::UNIX_EPOCH);
        }
        let kept = ring.newest_first();
        assert_eq!(kept.len(), KEPT);
        let ids: Vec<&str> = kept.iter().map(|e| e.id.as_str()).collect();
        assert_eq!(
            ids,
            [
                "T24", "T23", "T22", "T21", "T20", "T19", "T18", "T17", "T16", "T15"
            ]
        );
        // Every one counted, not only those kept.
        assert_eq!(window.top_errors(5)[0].count, 25);
    }

    #[test]
    fn delivered_is_timed_but_neither_listed_nor_counted_as_an_error() {
        let (window, ring) = (RecentWindow::default(), LastNotDelivered::default());
        let reply = Reply::new(250, [2, 0, 0], "Ok");
        let done = Finished {
            disposition: Disposition::Delivered,
            upstream_time: Some(Duration::from_millis(30)),
            ..failed(&reply, "a@goo.ne.jp", &[])
        };
        finished_into(&done, &window, &ring, SystemTime::UNIX_EPOCH);
        assert!(ring.newest_first().is_empty());
        assert!(window.top_errors(5).is_empty());
        assert_eq!(window.latency(Route::Ses).unwrap().samples, 1);
    }

    #[test]
    fn addresses_and_replies_are_masked_as_the_log_masks_them() {
        let (window, ring) = (RecentWindow::default(), LastNotDelivered::default());
        let reply = Reply::dynamic(
            554,
            [5, 7, 1],
            "Email address is not verified: someone@victim.example (MessageRejected)",
        );
        let rcpts = vec![
            "first@example.com".to_string(),
            "second@example.com".to_string(),
        ];
        let done = Finished {
            upstream_code: Some("MessageRejected"),
            disposition: Disposition::Rejected,
            ..failed(&reply, "sender@goo.ne.jp", &rcpts)
        };
        finished_into(&done, &window, &ring, SystemTime::UNIX_EPOCH);
        let entry = &ring.newest_first()[0];
        assert_eq!(entry.from, "s***@goo***.***");
        assert_eq!(entry.first_rcpt.as_deref(), Some("f***@exa***.***"));
        assert_eq!(entry.rcpts, 2);
        assert_eq!(
            entry.reply,
            "554 5.7.1 Email address is not verified: s***@vic***.*** (MessageRejected)"
        );
        assert!(!format!("{entry:?}").contains("victim"), "{entry:?}");
        assert_eq!(window.top_errors(5)[0].code, "MessageRejected");
        // The null sender stays `<>`; with masking off the log's text is kept.
        let plain = Finished {
            masker: Masker::new(false),
            ..failed(&reply, "", &rcpts)
        };
        finished_into(&plain, &window, &ring, SystemTime::UNIX_EPOCH);
        let entry = &ring.newest_first()[0];
        assert_eq!(entry.from, "<>");
        assert_eq!(entry.first_rcpt.as_deref(), Some("first@example.com"));
        assert!(entry.reply.contains("someone@victim.example"), "{entry:?}");
    }

    #[test]
    fn the_code_is_ses_s_else_the_reply_s() {
        let reply = Reply::new(451, [4, 3, 0], "Legacy route closed");
        assert_eq!(error_code(&reply, None), "451 4.3.0");
        assert_eq!(error_code(&reply, Some("Throttling")), "Throttling");
        assert_eq!(error_code(&Reply::plain(421, "bye"), None), "421");
    }
}

//! The message's trace: when the Postfix fleet took it, for the delivery
//! delay (`ses_relay_delivery_delay_seconds`, the guard's delay condition).
//!
//! The date is that of the topmost `Received:` header at arrival, before our
//! own is prepended: the one the client, the Postfix server that handed the
//! message over, added. Everything below it was written by whoever sent the
//! message to that Postfix, so it is content any sender controls: a forged
//! `Received: …; <yesterday>` must not roll back a migration. The date follows
//! the field's last `;` (RFC 5322 section 3.6.7). A topmost header whose date
//! does not parse leaves the message out of the delay; nothing below it is
//! ever read.

use crate::message::prepare::headers;

/// Seconds since the Unix epoch of the date of the topmost `Received:`
/// header of `message` (as it arrived), or `None` when there is none or its
/// date does not parse.
pub fn first_taken(message: &[u8]) -> Option<i64> {
    // The header reader of message preparation: the same fields, the same
    // folding, and `Received :` (the obsolete form) read alike.
    let (fields, _) = headers::split(message);
    let topmost = fields.iter().find(|field| field.is("received"))?;
    date_of(topmost.value())
}

fn date_of(value: &[u8]) -> Option<i64> {
    let at = memchr::memrchr(b';', value)?;
    let text = std::str::from_utf8(&value[at + 1..]).ok()?;
    // Unfold (RFC 5322 section 2.2.3) before parsing.
    let text = text.replace(['\r', '\n'], " ");
    let text = text.trim();
    if text.is_empty() {
        return None;
    }
    let date = mail_parser::DateTime::parse_rfc822(&format!("{text}\r\n"))?;
    date.is_valid().then(|| date.to_timestamp())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// 2026-12-01 08:00:00 UTC.
    const EIGHT: i64 = 1_796_112_000;

    #[test]
    fn the_topmost_received_date_wins_and_nothing_below_is_read() {
        let message = b"Received: from client (client [10.0.0.1])\r\n\tby mx1.goo.ne.jp (Postfix) with ESMTP id 4Abc;\r\n\tTue, 1 Dec 2026 17:00:00 +0900\r\n\
            Received: from forger by forger; Mon, 30 Nov 2026 08:00:00 +0000\r\n\
            Subject: Received: today; Tue, 1 Dec 2026 00:00:00 +0000\r\n\
            \r\n\
            Received: in the body; Mon, 1 Jan 2001 00:00:00 +0000\r\n";
        // 17:00 +0900 is 08:00 UTC: the topmost header, folded; the forged
        // older one below it is not used.
        assert_eq!(first_taken(message), Some(EIGHT));
    }

    #[test]
    fn the_obsolete_form_with_space_before_the_colon_is_a_received_header() {
        let message = b"RECEIVED : by mx1; Tue, 1 Dec 2026 08:00:00 +0000\r\n\
            Received: by forger; Mon, 30 Nov 2026 08:00:00 +0000\r\n\r\n";
        assert_eq!(first_taken(message), Some(EIGHT));
    }

    #[test]
    fn unparseable_or_missing_topmost_dates_are_left_out() {
        assert_eq!(first_taken(b"Subject: x\r\n\r\nbody\r\n"), None);
        assert_eq!(
            first_taken(b"Received: from a by b; not a date\r\n\r\n"),
            None
        );
        assert_eq!(first_taken(b"Received: from a by b\r\n\r\n"), None);
        // An unparseable topmost header does not fall back to one below it:
        // those are the sender's words.
        let message =
            b"Received: by mx1; yesterday\r\nReceived: by forger; Tue, 1 Dec 2026 08:00:00 +0000\r\n\r\n";
        assert_eq!(first_taken(message), None);
        assert_eq!(first_taken(b""), None);
        // Only the header section counts.
        assert_eq!(
            first_taken(b"Subject: x\r\n\r\nReceived: by a; Tue, 1 Dec 2026 08:00:00 +0000\r\n"),
            None
        );
    }
}

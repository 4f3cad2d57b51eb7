//! The message's trace: when the Postfix fleet first took it, read from the
//! date of its oldest `Received:` header, for the delivery delay
//! (`ses_relay_delivery_delay_seconds`, the guard's delay condition).
//!
//! Each hop prepends its `Received:` (RFC 5321 section 4.4), so the oldest is
//! the last one in the header section; its date follows the last `;`
//! (RFC 5322 section 3.6.7). A header whose date does not parse is skipped for
//! the next older-but-one; a message with none is left out of the delay.

/// Seconds since the Unix epoch of the oldest parseable `Received:` date in
/// `message`'s header section, or `None`.
pub fn first_taken(message: &[u8]) -> Option<i64> {
    let header_end = memchr::memmem::find(message, b"\r\n\r\n").map_or(message.len(), |i| i + 2);
    let headers = &message[..header_end];
    let mut fields: Vec<Vec<u8>> = Vec::new();
    let mut in_received = false;
    for line in headers.split(|&b| b == b'\n') {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        if line.first().is_some_and(|b| *b == b' ' || *b == b'\t') {
            if in_received && let Some(field) = fields.last_mut() {
                field.push(b' ');
                field.extend_from_slice(line);
            }
            continue;
        }
        in_received = line.len() > 9 && line[..9].eq_ignore_ascii_case(b"received:");
        if in_received {
            fields.push(line[9..].to_vec());
        }
    }
    fields.iter().rev().find_map(|field| date_of(field))
}

fn date_of(field: &[u8]) -> Option<i64> {
    let at = memchr::memrchr(b';', field)?;
    let text = std::str::from_utf8(&field[at + 1..]).ok()?.trim();
    if text.is_empty() {
        return None;
    }
    let date = mail_parser::DateTime::parse_rfc822(&format!("{text}\r\n"))?;
    date.is_valid().then(|| date.to_timestamp())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn oldest_received_date_wins() {
        let message = b"Received: from mx2 by relay; Tue, 1 Dec 2026 08:10:00 +0000\r\n\
            Received: from client (client [10.0.0.1])\r\n\tby mx1.goo.ne.jp (Postfix) with ESMTP id 4Abc;\r\n\tTue, 1 Dec 2026 17:00:00 +0900\r\n\
            Subject: Received: today; Tue, 1 Dec 2026 00:00:00 +0000\r\n\
            \r\n\
            Received: in the body; Mon, 1 Jan 2001 00:00:00 +0000\r\n";
        // 17:00 +0900 is 08:00 UTC: the second (oldest) header, folded.
        assert_eq!(first_taken(message), Some(1_796_112_000));
    }

    #[test]
    fn unparseable_or_missing_dates_are_left_out() {
        assert_eq!(first_taken(b"Subject: x\r\n\r\nbody\r\n"), None);
        assert_eq!(
            first_taken(b"Received: from a by b; not a date\r\n\r\n"),
            None
        );
        assert_eq!(first_taken(b"Received: from a by b\r\n\r\n"), None);
        // An unparseable oldest header falls back to the next one up.
        let message =
            b"Received: by b; Tue, 1 Dec 2026 08:00:00 +0000\r\nReceived: by a; yesterday\r\n\r\n";
        assert_eq!(first_taken(message), Some(1_796_112_000));
        assert_eq!(first_taken(b""), None);
    }
}

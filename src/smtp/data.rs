//! Receiving a message after DATA: dot-unstuffing and the end marker come from
//! smtp-proto's receiver; this adds the size limit (discard, never buffer, past
//! it) and the bare CR / bare LF refusal that closes SMTP smuggling.

use smtp_proto::request::receiver::{DataReceiver, DummyDataReceiver};

/// Where a message being received stands.
#[derive(Debug, PartialEq, Eq)]
pub enum DataEnd {
    /// The end marker has not arrived yet.
    Pending,
    /// `CRLF.CRLF` arrived: the message, unstuffed, ending in CRLF.
    Complete(Vec<u8>),
    /// The end marker arrived after more than the size limit; the excess was discarded.
    TooBig,
    /// The end marker arrived, but the message held a CR or LF not part of a CRLF pair.
    BareLineEnding,
}

/// Accumulates one message body.
pub struct MessageReceiver {
    receiver: DataReceiver,
    /// Set once the limit is passed or a bare line ending is seen: the rest is skipped.
    discard: Option<(DummyDataReceiver, DataEnd)>,
    body: Vec<u8>,
    limit: usize,
    /// Bytes of `body` already checked for bare CR/LF.
    checked: usize,
}

impl MessageReceiver {
    /// `limit` is the largest message kept; `size_hint` (from MAIL SIZE=) presizes the buffer.
    pub fn new(limit: usize, size_hint: usize) -> MessageReceiver {
        let mut receiver = DataReceiver::new();
        // The receiver only knows a line start after CRLF. Prime it with one so a
        // message whose first line is "." (empty) or dot-stuffed is read right;
        // the two bytes are removed when the message completes.
        let mut body = Vec::with_capacity(size_hint.min(limit).saturating_add(2));
        receiver.ingest(&mut b"\r\n".iter(), &mut body);
        MessageReceiver {
            receiver,
            discard: None,
            body,
            limit: limit.saturating_add(2),
            checked: 2,
        }
    }

    /// Consumes bytes from `bytes`; returns how many were used and the state.
    /// Bytes after the end marker are left for the command parser (PIPELINING).
    pub fn ingest(&mut self, bytes: &[u8]) -> (usize, DataEnd) {
        let mut rest = bytes;
        while !rest.is_empty() {
            if let Some((skipper, _)) = &mut self.discard {
                let mut iter = rest.iter();
                let done = skipper.ingest(&mut iter);
                let used = bytes.len() - iter.as_slice().len();
                if done {
                    let (_, end) = self.discard.take().expect("checked above");
                    return (used, end);
                }
                return (used, DataEnd::Pending);
            }
            // Feed at most what still fits, so the body never exceeds limit + 2.
            let room = (self.limit + 2).saturating_sub(self.body.len()).max(1);
            let take = rest.len().min(room);
            let mut iter = rest[..take].iter();
            let done = self.receiver.ingest(&mut iter, &mut self.body);
            let used = take - iter.as_slice().len();
            rest = &rest[used..];
            if let Some(end) = self.check() {
                if done {
                    return (bytes.len() - rest.len(), end);
                }
                self.start_discarding(end);
                continue;
            }
            if done {
                let mut body = std::mem::take(&mut self.body);
                body.drain(..2);
                return (bytes.len() - rest.len(), DataEnd::Complete(body));
            }
        }
        (bytes.len(), DataEnd::Pending)
    }

    /// Checks the bytes added since the last call: size, then bare CR/LF.
    fn check(&mut self) -> Option<DataEnd> {
        let body = &self.body;
        // The CR after a final "." sits in the body until its LF ends the message.
        let slack = usize::from(body.last() == Some(&b'\r'));
        if body.len() > self.limit + slack {
            return Some(DataEnd::TooBig);
        }
        // A CR at the very end may yet be followed by its LF: check it next time.
        let end = if body.last() == Some(&b'\r') {
            body.len() - 1
        } else {
            body.len()
        };
        for i in self.checked..end {
            let bare = match body[i] {
                b'\n' => body[i - 1] != b'\r',
                b'\r' => body[i + 1] != b'\n',
                _ => false,
            };
            if bare {
                return Some(DataEnd::BareLineEnding);
            }
        }
        self.checked = end;
        None
    }

    fn start_discarding(&mut self, end: DataEnd) {
        let skipper = DummyDataReceiver::new_data(&self.receiver);
        self.body = Vec::new();
        self.discard = Some((skipper, end));
    }
}

/// The DATA wire form of a message for an upstream: a leading `.` doubled on
/// every line (RFC 5321 section 4.5.2), a final CRLF ensured, then `.CRLF`.
pub fn dot_stuff(message: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(message.len() + message.len() / 64 + 5);
    let mut line_start = true;
    for &byte in message {
        if line_start && byte == b'.' {
            out.push(b'.');
        }
        out.push(byte);
        line_start = byte == b'\n';
    }
    if !message.is_empty() && !message.ends_with(b"\r\n") {
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(b".\r\n");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dot_stuffing_round_trips_through_the_receiver() {
        let message = b".first\r\nmiddle\r\n..two\r\n.\r\nlast\r\n";
        let wire = dot_stuff(message);
        assert_eq!(
            &wire[..],
            b"..first\r\nmiddle\r\n...two\r\n..\r\nlast\r\n.\r\n"
        );
        let mut rx = MessageReceiver::new(1000, 0);
        assert_eq!(
            rx.ingest(&wire),
            (wire.len(), DataEnd::Complete(message.to_vec()))
        );
        assert_eq!(dot_stuff(b""), b".\r\n");
        assert_eq!(dot_stuff(b"no newline"), b"no newline\r\n.\r\n");
    }

    fn receive(limit: usize, chunks: &[&[u8]]) -> (DataEnd, Vec<u8>) {
        let mut rx = MessageReceiver::new(limit, 0);
        let mut leftover = Vec::new();
        for (i, chunk) in chunks.iter().enumerate() {
            let (used, end) = rx.ingest(chunk);
            if end != DataEnd::Pending {
                leftover.extend_from_slice(&chunk[used..]);
                for later in &chunks[i + 1..] {
                    leftover.extend_from_slice(later);
                }
                return (end, leftover);
            }
            assert_eq!(used, chunk.len());
        }
        (DataEnd::Pending, leftover)
    }

    #[test]
    fn complete_with_unstuffing_and_pipelined_tail() {
        let (end, rest) = receive(1000, &[b"Subject: x\r\n\r\n..dot\r\nbody\r\n.\r\nQUIT\r\n"]);
        assert_eq!(
            end,
            DataEnd::Complete(b"Subject: x\r\n\r\n.dot\r\nbody\r\n".to_vec())
        );
        assert_eq!(rest, b"QUIT\r\n");
    }

    #[test]
    fn end_marker_split_across_reads() {
        let (end, _) = receive(
            1000,
            &[b"a: b\r\n\r\nhi\r", b"\n", b".", b"\r", b"\nNOOP\r\n"],
        );
        assert_eq!(end, DataEnd::Complete(b"a: b\r\n\r\nhi\r\n".to_vec()));
    }

    #[test]
    fn empty_message_and_leading_dot() {
        assert_eq!(receive(1000, &[b".\r\n"]).0, DataEnd::Complete(Vec::new()));
        assert_eq!(
            receive(1000, &[b"..x\r\n.\r\n"]).0,
            DataEnd::Complete(b".x\r\n".to_vec())
        );
    }

    #[test]
    fn only_crlf_dot_crlf_ends_data() {
        // Smuggling attempts: "\n.\n", "\r.\r", "\n.\r\n" must not end DATA...
        for attack in [
            &b"a\n.\nMAIL FROM:<x@y>\r\n"[..],
            b"a\r.\rRCPT\r\n",
            b"a\n.\r\nX\r\n",
        ] {
            let mut rx = MessageReceiver::new(1000, 0);
            let (used, end) = rx.ingest(attack);
            assert_eq!(used, attack.len());
            assert_eq!(end, DataEnd::Pending, "{attack:?} ended DATA");
            // ...and the message they sit in is refused at the real end.
            let (_, end) = rx.ingest(b"\r\n.\r\n");
            assert_eq!(end, DataEnd::BareLineEnding, "{attack:?}");
        }
    }

    #[test]
    fn bare_cr_and_bare_lf_are_refused() {
        assert_eq!(
            receive(1000, &[b"a\nb\r\n.\r\n"]).0,
            DataEnd::BareLineEnding
        );
        assert_eq!(
            receive(1000, &[b"a\rb\r\n.\r\n"]).0,
            DataEnd::BareLineEnding
        );
        assert_eq!(
            receive(1000, &[b"a\r", b"b\r\n.\r\n"]).0,
            DataEnd::BareLineEnding
        );
        assert_eq!(
            receive(1000, &[b"a\r", b"\nb\r\n.\r\n"]).0,
            DataEnd::Complete(b"a\r\nb\r\n".to_vec())
        );
    }

    #[test]
    fn oversize_is_discarded_not_buffered() {
        let mut rx = MessageReceiver::new(100, 0);
        let line = [b'x'; 78];
        for _ in 0..1000 {
            let mut chunk = line.to_vec();
            chunk.extend_from_slice(b"\r\n");
            let (used, end) = rx.ingest(&chunk);
            assert_eq!((used, end), (chunk.len(), DataEnd::Pending));
            assert!(rx.body.len() <= 104, "buffered {}", rx.body.len());
        }
        let (_, end) = rx.ingest(b".\r\nQUIT\r\n");
        assert_eq!(end, DataEnd::TooBig);
    }

    #[test]
    fn exactly_at_the_limit_is_accepted() {
        let msg = [b'y'; 98];
        let mut data = msg.to_vec();
        data.extend_from_slice(b"\r\n.\r\n");
        assert!(matches!(receive(100, &[&data]).0, DataEnd::Complete(b) if b.len() == 100));
        assert_eq!(receive(99, &[&data]).0, DataEnd::TooBig);
    }
}

//! Receiving a message after DATA, in our own framing: the end marker is
//! `CRLF . CRLF` and nothing else, dot-unstuffing (RFC 5321 section 4.5.2),
//! the size limit (discard, never buffer, past it), the refusal of bare CR,
//! bare LF and NUL, and the relay-wide budget of message bytes held.
//!
//! smtp-proto's `DataReceiver` is not used here: its state machine lets
//! `CRLF . CR CR LF` end the data, which is the SMTP smuggling hole (a second
//! transaction hidden in a body). Every byte goes through [`Scan`] below, so a
//! marker split across reads ends the data exactly when the same bytes in one
//! read would.

use std::sync::Arc;

use memchr::memchr3;

use super::memory::{DataMemory, Reservation};

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
    /// The end marker arrived, but the message held a NUL byte (RFC 5322
    /// section 2.3 and RFC 6152 forbid it; some servers drop it, which makes
    /// `CRLF . NUL CRLF` an end marker to them).
    NulByte,
    /// The end marker arrived, but holding the message would have passed
    /// `smtp.max-data-memory`; it was discarded.
    NoMemory,
}

/// Where the scanner stands in the byte stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Scan {
    /// After CRLF, or at the very start (the CRLF ending the DATA command).
    LineStart,
    /// A `.` at the start of a line.
    Dot,
    /// `.` CR at the start of a line: an LF now ends the data.
    DotCr,
    /// Inside a line.
    Text,
    /// Inside a line, after a CR whose LF has not come yet.
    Cr,
}

/// Most a declared `SIZE=` reserves before the data arrives.
const PRESIZE_MAX: usize = 64 * 1024;

/// Accumulates one message body.
#[derive(Debug)]
pub struct MessageReceiver {
    scan: Scan,
    body: Vec<u8>,
    limit: usize,
    /// Set once the message is refused (too big, malformed, no memory): the
    /// rest is scanned for the end marker and discarded.
    verdict: Option<DataEnd>,
    /// The budget share backing `body`'s capacity.
    reservation: Reservation,
}

impl MessageReceiver {
    /// `limit` is the largest message kept; `size_hint` (from MAIL SIZE=) presizes the buffer.
    pub fn new(limit: usize, size_hint: usize) -> MessageReceiver {
        MessageReceiver::with_memory(limit, size_hint, DataMemory::unlimited())
    }

    /// As [`MessageReceiver::new`], holding the body's bytes against `memory`.
    pub fn with_memory(limit: usize, size_hint: usize, memory: Arc<DataMemory>) -> MessageReceiver {
        let mut receiver = MessageReceiver {
            scan: Scan::LineStart,
            body: Vec::new(),
            limit,
            verdict: None,
            reservation: Reservation::new(memory),
        };
        // A declared size is a hint, not a right: presize a little from what the
        // budget grants, and grow with the bytes that really arrive, so a client
        // that declares 40 MiB and sends nothing holds almost nothing.
        let presize = size_hint.min(limit).min(PRESIZE_MAX);
        if presize > 0 && receiver.reservation.grow(presize) {
            receiver.body.reserve_exact(presize);
        }
        receiver
    }

    /// The budget share of the message once it is complete; keep it until the
    /// message is no longer held.
    pub fn into_reservation(self) -> Reservation {
        self.reservation
    }

    /// Consumes bytes from `bytes`; returns how many were used and the state.
    /// Bytes after the end marker are left for the command parser (PIPELINING).
    pub fn ingest(&mut self, bytes: &[u8]) -> (usize, DataEnd) {
        let mut i = 0;
        while i < bytes.len() {
            if self.scan == Scan::Text {
                // The fast path: copy the run up to the next CR, LF or NUL.
                let rest = &bytes[i..];
                let run = memchr3(b'\r', b'\n', 0, rest).unwrap_or(rest.len());
                self.keep(&rest[..run]);
                i += run;
                let Some(&byte) = bytes.get(i) else { break };
                i += 1;
                match byte {
                    b'\r' => self.scan = Scan::Cr,
                    b'\n' => self.refuse(DataEnd::BareLineEnding),
                    _ => self.refuse(DataEnd::NulByte),
                }
                continue;
            }
            let byte = bytes[i];
            i += 1;
            match (self.scan, byte) {
                (Scan::LineStart, b'.') => self.scan = Scan::Dot,
                (Scan::LineStart, b'\r') => self.scan = Scan::Cr,
                (Scan::Dot, b'\r') => self.scan = Scan::DotCr,
                (Scan::DotCr, b'\n') => return (i, self.complete()),
                (Scan::Cr, b'\n') => {
                    self.keep(b"\r\n");
                    self.scan = Scan::LineStart;
                }
                (Scan::Cr, _) => {
                    // A CR not followed by LF; the byte after it is read again as text.
                    self.refuse(DataEnd::BareLineEnding);
                    self.scan = Scan::Text;
                    i -= 1;
                }
                (Scan::DotCr, _) => {
                    // ". CR x": the dot was stuffing; the CR is pending as in any line.
                    self.scan = Scan::Cr;
                    i -= 1;
                }
                // The dot of a line with more on it is stuffing: dropped (RFC 5321 4.5.2).
                (Scan::LineStart | Scan::Dot, _) => {
                    self.scan = Scan::Text;
                    i -= 1;
                }
                (Scan::Text, _) => unreachable!("text is handled above"),
            }
        }
        (bytes.len(), DataEnd::Pending)
    }

    /// The end marker arrived.
    fn complete(&mut self) -> DataEnd {
        self.scan = Scan::LineStart;
        match self.verdict.take() {
            Some(verdict) => verdict,
            None => DataEnd::Complete(std::mem::take(&mut self.body)),
        }
    }

    /// Appends message bytes, unless the message is already refused.
    fn keep(&mut self, bytes: &[u8]) {
        if self.verdict.is_some() || bytes.is_empty() {
            return;
        }
        let needed = self.body.len() + bytes.len();
        if needed > self.limit {
            return self.discard(DataEnd::TooBig);
        }
        // The reservation, not the Vec's capacity, is what the budget counts:
        // grow it first, and the buffer only to what it covers.
        let held = self.reservation.bytes();
        if needed > held {
            let target = needed.max(held.saturating_mul(2)).max(4096).min(self.limit);
            if !self.reservation.grow(target - held) {
                return self.discard(DataEnd::NoMemory);
            }
            self.body.reserve_exact(target - self.body.len());
        }
        self.body.extend_from_slice(bytes);
    }

    /// A malformed byte: the first problem found is the verdict.
    fn refuse(&mut self, verdict: DataEnd) {
        if self.verdict.is_none() {
            self.discard(verdict);
        }
    }

    /// Drops what was kept and gives its memory back; the rest is only scanned.
    fn discard(&mut self, verdict: DataEnd) {
        self.verdict = Some(verdict);
        self.body = Vec::new();
        self.reservation.release();
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
mod tests;

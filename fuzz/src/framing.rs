//! Target (a): command and DATA framing over arbitrary read splits.
//!
//! Input layout: everything up to the first LF is the *split spec*, the rest
//! is what the client sends. Spec byte 0 picks the message size limit, byte 1
//! the `SIZE=` hint (`b % 4`) and the `smtp.max-data-memory` budget of the
//! directly driven receiver (`b / 4 % 4`), and each further byte one read
//! length (`b % 64 + 1`), used in turn. Without a spec line the whole input
//! is the client's.
//!
//! The stream is fed the way `Session::process` does it (commands until
//! `DATA` opens a transaction with recipients, then the receiver until the
//! message ends, then commands again), three times: in one read, in the
//! spec's reads, and one byte per read. The invariants:
//!
//! - nothing panics;
//! - the three runs give the same commands and the same `DataEnd`s (a
//!   difference means TCP segmentation decides what is a command: the
//!   SMTP-smuggling property);
//! - fed directly, `MessageReceiver::ingest` never reports more bytes used
//!   than it was given, ends exactly after the first `CRLF.CRLF` (RFC 5321
//!   section 4.1.1.4, and nowhere else), returns what a
//!   plain reference reading of the same bytes expects (the unstuffed
//!   message, or a refusal the bytes justify), never holds more heap than
//!   about twice the size limit, never holds more of the memory budget than
//!   it has, and gives all of it back when dropped.

use memchr::memmem;
use ses_relay::connection::smtp::{Command, DataEnd, DataMemory, Input, MessageReceiver};
use smtp_proto::Request;

/// Size limits tried: the edges (0, 1), small ones a fuzz input easily
/// passes, and one most inputs stay under.
const LIMITS: [usize; 6] = [0, 1, 5, 64, 300, 4096];

/// Heap the receiver may hold beyond twice its limit (its own state, the
/// priming CRLF, smtp-proto's receiver).
const HEAP_SLACK: usize = 4096;

/// One step of what the session saw.
#[derive(Debug, PartialEq, Eq)]
enum Event {
    Command(Command),
    Data(DataEnd),
}

/// The target: see the module docs.
pub fn run(data: &[u8]) {
    let (spec, stream) = match memchr::memchr(b'\n', data) {
        Some(lf) => (&data[..lf], &data[lf + 1..]),
        None => (&[][..], data),
    };
    let limit = LIMITS[usize::from(spec.first().copied().unwrap_or(5)) % LIMITS.len()];
    let size_hint = match spec.get(1).map(|b| b % 4) {
        Some(1) => limit,
        Some(2) => usize::MAX,
        Some(3) => 1_000_000_000,
        _ => 0,
    };
    let budget = match spec.get(1).map(|b| b / 4 % 4) {
        Some(1) => 0,
        Some(2) => 64,
        Some(3) => 4096,
        _ => usize::MAX,
    };
    let reads: Vec<usize> = spec
        .iter()
        .skip(2)
        .map(|&b| usize::from(b % 64) + 1)
        .collect();
    let reads = if reads.is_empty() { vec![7] } else { reads };

    let whole = session(
        stream,
        std::iter::repeat(stream.len().max(1)),
        limit,
        size_hint,
    );
    let split = session(stream, reads.iter().copied().cycle(), limit, size_hint);
    assert_eq!(
        whole, split,
        "reads of {reads:?} changed what the session saw"
    );
    let bytewise = session(stream, std::iter::repeat(1), limit, size_hint);
    assert_eq!(
        whole, bytewise,
        "one byte per read changed what the session saw"
    );

    let body = match find_ignore_case(stream, b"DATA\r\n") {
        Some(at) => &stream[at + 6..],
        None => stream,
    };
    let limits = Limits {
        size: limit,
        size_hint,
        budget,
    };
    receiver(body, reads.iter().copied().cycle(), &limits);
    receiver(body, std::iter::repeat(1), &limits);
}

/// Feeds `stream` in reads of the given lengths the way the session does;
/// returns every command and message ending seen. Stops at STARTTLS (the
/// session then drops what is buffered, on purpose: CVE-2011-0411) and QUIT.
fn session(
    stream: &[u8],
    mut reads: impl Iterator<Item = usize>,
    limit: usize,
    size_hint: usize,
) -> Vec<Event> {
    let mut input = Input::new();
    let mut receiver: Option<MessageReceiver> = None;
    // The transaction, as far as framing cares: MAIL seen, recipients seen.
    let (mut mail, mut recipients) = (false, 0usize);
    let mut events = Vec::new();
    let mut rest = stream;
    loop {
        loop {
            if let Some(rx) = receiver.as_mut() {
                match input.feed(rx) {
                    DataEnd::Pending => break,
                    end => {
                        events.push(Event::Data(end));
                        receiver = None;
                        (mail, recipients) = (false, 0);
                        continue;
                    }
                }
            }
            let Some(command) = input.next_command() else {
                break;
            };
            let stop = matches!(command, Command::Request(Request::StartTls | Request::Quit));
            match &command {
                Command::Request(Request::Mail { .. }) if !mail => (mail, recipients) = (true, 0),
                Command::Request(Request::Rcpt { .. }) if mail => recipients += 1,
                Command::Request(Request::Data) if recipients > 0 => {
                    receiver = Some(MessageReceiver::new(limit, size_hint));
                }
                Command::Request(Request::Rset | Request::Ehlo { .. } | Request::Helo { .. }) => {
                    (mail, recipients) = (false, 0);
                }
                _ => {}
            }
            events.push(Event::Command(command));
            if stop {
                return events;
            }
        }
        if rest.is_empty() {
            return events;
        }
        let n = reads.next().unwrap_or(1).clamp(1, rest.len());
        input.push(&rest[..n]);
        rest = &rest[n..];
    }
}

/// What a message after `354` must come to, read the plain way: it ends at
/// the first `CRLF.CRLF` (the CRLF before `354`'s first line counts), and
/// nowhere else.
struct Expected {
    /// Bytes of the data the receiver must consume, end marker included.
    used: usize,
    /// The message as sent (dot-stuffed), ending in its last CRLF.
    raw: Vec<u8>,
}

fn expected(data: &[u8]) -> Option<Expected> {
    let mut framed = b"\r\n".to_vec();
    framed.extend_from_slice(data);
    let at = memmem::find(&framed, b"\r\n.\r\n")?;
    Some(Expected {
        used: at + 3,
        raw: framed[2..at + 2].to_vec(),
    })
}

/// What the directly driven receiver is given.
struct Limits {
    /// The message size limit.
    size: usize,
    /// MAIL's `SIZE=`.
    size_hint: usize,
    /// `smtp.max-data-memory`, `usize::MAX` for none.
    budget: usize,
}

/// Whether the message holds a CR or LF that is not part of a CRLF pair.
fn has_bare_line_ending(raw: &[u8]) -> bool {
    raw.iter().enumerate().any(|(i, &b)| match b {
        b'\n' => i == 0 || raw[i - 1] != b'\r',
        b'\r' => raw.get(i + 1) != Some(&b'\n'),
        _ => false,
    })
}

/// RFC 5321 section 4.5.2: one leading dot removed from every line.
fn unstuff(raw: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(raw.len());
    let mut line_start = true;
    for &b in raw {
        if !(line_start && b == b'.') {
            out.push(b);
        }
        line_start = b == b'\n';
    }
    out
}

/// Drives the receiver alone over `data` (the bytes after `DATA\r\n`),
/// offering again whatever it left unconsumed, and checks it against the
/// reference reading.
fn receiver(data: &[u8], mut reads: impl Iterator<Item = usize>, limits: &Limits) {
    let limit = limits.size;
    let want = expected(data);
    let memory = DataMemory::new(limits.budget);
    // Sized up front so the driver's own buffer never moves the heap count.
    let mut pending: Vec<u8> = Vec::with_capacity(data.len());
    let base = crate::heap_mark();
    let mut rx = MessageReceiver::with_memory(limit, limits.size_hint, memory.clone());
    let mut consumed = 0;
    let mut rest = data;
    let end = loop {
        if rest.is_empty() {
            break DataEnd::Pending;
        }
        let n = reads.next().unwrap_or(1).clamp(1, rest.len());
        pending.extend_from_slice(&rest[..n]);
        rest = &rest[n..];
        let (used, end) = rx.ingest(&pending);
        assert!(
            used <= pending.len(),
            "ingest used {used} of {} bytes",
            pending.len()
        );
        let held = crate::heap_peak().saturating_sub(base);
        assert!(
            held <= 2 * limit + HEAP_SLACK,
            "receiver held {held} heap bytes with a {limit}-byte limit"
        );
        assert!(
            memory.held() <= limits.budget,
            "{} bytes of a {}-byte memory budget held",
            memory.held(),
            limits.budget
        );
        consumed += used;
        pending.drain(..used);
        if end != DataEnd::Pending {
            break end;
        }
    };
    drop(rx);
    assert_eq!(
        memory.held(),
        0,
        "the receiver kept memory budget after it was dropped"
    );
    let Some(want) = want else {
        assert_eq!(
            end,
            DataEnd::Pending,
            "DATA ended without CRLF.CRLF, after {consumed} bytes ending {:?}",
            tail(&data[..consumed])
        );
        return;
    };
    assert_ne!(end, DataEnd::Pending, "CRLF.CRLF did not end DATA");
    assert_eq!(
        consumed,
        want.used,
        "DATA ended at byte {consumed} (after {:?}), its first CRLF.CRLF ends at {}: {end:?}",
        tail(&data[..consumed]),
        want.used
    );
    let bare = has_bare_line_ending(&want.raw);
    let nul = want.raw.contains(&0);
    // Which of several problems is reported is the receiver's choice; each
    // refusal must be justified by the bytes.
    match end {
        DataEnd::Complete(body) => {
            assert!(!bare, "a bare CR or LF was accepted");
            assert!(!nul, "a NUL byte was accepted");
            assert!(
                body.len() <= limit,
                "{} bytes kept, limit {limit}",
                body.len()
            );
            assert!(
                body.len() <= limits.budget,
                "{} bytes kept, memory budget {}",
                body.len(),
                limits.budget
            );
            assert_eq!(body, unstuff(&want.raw), "message not unstuffed right");
        }
        DataEnd::BareLineEnding => assert!(bare, "refused a message with no bare CR or LF"),
        DataEnd::NulByte => assert!(nul, "refused a message with no NUL"),
        DataEnd::TooBig if bare || nul => {
            assert!(want.raw.len() > limit, "refused as too big");
        }
        DataEnd::TooBig => assert!(
            unstuff(&want.raw).len() > limit,
            "refused {} bytes as too big, limit {limit}",
            unstuff(&want.raw).len()
        ),
        DataEnd::NoMemory => assert!(
            limits.budget != usize::MAX,
            "out of memory budget without a budget"
        ),
        DataEnd::Pending => unreachable!("ruled out above"),
    }
}

/// The last bytes of `bytes`, readable: where a wrong end marker was taken.
fn tail(bytes: &[u8]) -> String {
    let from = bytes.len().saturating_sub(8);
    bytes[from..].escape_ascii().to_string()
}

fn find_ignore_case(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack
        .windows(needle.len())
        .position(|w| w.eq_ignore_ascii_case(needle))
}

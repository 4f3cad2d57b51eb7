//! The session's input buffer: command framing with the line-length limit,
//! and hand-off of raw bytes to the DATA receiver.

use memchr::memchr;
use smtp_proto::Request;

use super::data::{DataEnd, MessageReceiver};
use super::path::{self, Refusal};

/// Longest command line accepted, CRLF included (RFC 5321 section 4.5.3.1.6 text-line limit).
pub const MAX_LINE_LEN: usize = 1000;

/// How much the buffer asks the socket for at a time.
const READ_CHUNK: usize = 16 * 1024;

/// One framed command line, parsed.
#[derive(Debug, PartialEq, Eq)]
pub enum Command {
    /// A well-formed command.
    Request(Request<String>),
    /// A complete line that is not a valid command.
    Invalid(smtp_proto::Error),
    /// A line longer than `MAX_LINE_LEN`; it has been discarded up to its LF.
    TooLong,
    /// A line refused by our own checks (control bytes, malformed addresses)
    /// before smtp-proto parsed it.
    Refused(Refusal),
}

/// Bytes read from the client and not consumed yet.
#[derive(Debug, Default)]
pub struct Input {
    buf: Vec<u8>,
    pos: usize,
    /// Dropping the rest of an overlong line until its LF.
    skipping: bool,
}

impl Input {
    /// A buffer with room for one read.
    pub fn new() -> Input {
        Input {
            buf: Vec::with_capacity(READ_CHUNK),
            pos: 0,
            skipping: false,
        }
    }

    /// Whether every byte read has been consumed.
    #[cfg(test)]
    pub fn is_empty(&self) -> bool {
        self.pos == self.buf.len()
    }

    /// The buffer to read into: consumed bytes are dropped and room is reserved.
    pub fn for_read(&mut self) -> &mut Vec<u8> {
        if self.pos > 0 {
            self.buf.drain(..self.pos);
            self.pos = 0;
        }
        self.buf.reserve(READ_CHUNK);
        &mut self.buf
    }

    /// Appends bytes (tests, fuzzing).
    pub fn push(&mut self, bytes: &[u8]) {
        self.for_read().extend_from_slice(bytes);
    }

    /// Drops everything buffered. After STARTTLS, plaintext the client sent
    /// behind the command must not be taken as if it came over TLS (CVE-2011-0411).
    pub fn clear(&mut self) {
        self.buf.clear();
        self.pos = 0;
        self.skipping = false;
    }

    /// The next complete command line, if one is buffered.
    pub fn next_command(&mut self) -> Option<Command> {
        let rest = &self.buf[self.pos..];
        match memchr(b'\n', rest) {
            Some(end) => {
                let line_len = end + 1;
                let line = &rest[..line_len];
                self.pos += line_len;
                if std::mem::take(&mut self.skipping) || line_len > MAX_LINE_LEN {
                    return Some(Command::TooLong);
                }
                if let Some(refusal) = path::precheck(line) {
                    return Some(Command::Refused(refusal));
                }
                Some(match Request::parse(&mut line.iter()) {
                    Ok(request) => {
                        let mut request = request.into_owned();
                        path::restore(line, &mut request);
                        Command::Request(request)
                    }
                    Err(err) => Command::Invalid(err),
                })
            }
            None if rest.len() >= MAX_LINE_LEN => {
                // Never buffer an endless line: keep dropping until its LF arrives.
                self.skipping = true;
                self.pos = self.buf.len();
                None
            }
            None => None,
        }
    }

    /// Feeds buffered bytes to the DATA receiver; returns its state.
    pub fn feed(&mut self, receiver: &mut MessageReceiver) -> DataEnd {
        let (used, end) = receiver.ingest(&self.buf[self.pos..]);
        self.pos += used;
        end
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn commands(input: &mut Input) -> Vec<Command> {
        std::iter::from_fn(|| input.next_command()).collect()
    }

    #[test]
    fn frames_pipelined_commands() {
        let mut input = Input::new();
        input.push(b"MAIL FROM:<a@b.example>\r\nRCPT TO:<c@d.example>\r\nDA");
        let got = commands(&mut input);
        assert_eq!(got.len(), 2);
        assert!(
            matches!(&got[0], Command::Request(Request::Mail { from }) if from.address == "a@b.example")
        );
        assert!(
            matches!(&got[1], Command::Request(Request::Rcpt { to }) if to.address == "c@d.example")
        );
        assert!(!input.is_empty());
        input.push(b"TA\r\n");
        assert_eq!(commands(&mut input), vec![Command::Request(Request::Data)]);
        assert!(input.is_empty());
    }

    #[test]
    fn null_sender_parses() {
        let mut input = Input::new();
        input.push(b"MAIL FROM:<>\r\n");
        assert!(
            matches!(input.next_command(), Some(Command::Request(Request::Mail { from })) if from.address.is_empty())
        );
    }

    #[test]
    fn line_length_edges() {
        // 997..=1001 octets including CRLF: the limit is 1000.
        for total in 997..=1001usize {
            let mut line = b"NOOP ".to_vec();
            line.resize(total - 2, b'x');
            line.extend_from_slice(b"\r\n");
            let mut input = Input::new();
            input.push(&line);
            let got = input.next_command().unwrap();
            if total <= MAX_LINE_LEN {
                assert!(
                    matches!(got, Command::Request(Request::Noop { .. })),
                    "{total}: {got:?}"
                );
            } else {
                assert_eq!(got, Command::TooLong, "{total}");
            }
        }
    }

    #[test]
    fn endless_line_is_not_buffered() {
        let mut input = Input::new();
        for _ in 0..100 {
            input.push(&[b'A'; 4096]);
            assert_eq!(input.next_command(), None);
            assert!(input.buf.len() - input.pos < MAX_LINE_LEN);
        }
        input.push(b"AAA\r\nNOOP\r\n");
        assert_eq!(input.next_command(), Some(Command::TooLong));
        assert!(matches!(
            input.next_command(),
            Some(Command::Request(Request::Noop { .. }))
        ));
    }

    #[test]
    fn garbage_is_invalid_not_a_panic() {
        let mut input = Input::new();
        input.push(b"\xff\xfe\r\nMAIL FROM:<bad\r\nRCPT TO:<a@b\r\nFOO BAR\r\n\r\n");
        let got = commands(&mut input);
        assert_eq!(got.len(), 5);
        assert!(
            got.iter().all(|c| matches!(c, Command::Invalid(_))),
            "{got:?}"
        );
    }

    #[test]
    fn clear_drops_pipelined_plaintext() {
        let mut input = Input::new();
        input.push(b"STARTTLS\r\nMAIL FROM:<a@b.example>\r\n");
        assert_eq!(
            input.next_command(),
            Some(Command::Request(Request::StartTls))
        );
        input.clear();
        assert_eq!(input.next_command(), None);
    }
}

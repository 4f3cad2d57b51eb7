//! What the command framing checks on the raw line before trusting
//! smtp-proto's parse of it: control bytes (smtp-proto drops a CR inside
//! `EHLO a\rb` and keeps controls inside quoted local parts), the reverse and
//! forward paths as the client wrote them (smtp-proto unquotes
//! `"a b"@example.com` to `a b@example.com`, a different mailbox), and the
//! `SIZE=` value (smtp-proto wraps one that overflows, so
//! `SIZE=1000000000000000000000000` would read as a small number).

use smtp_proto::Request;

use super::Reply;

/// The reply to a line that fails these checks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    /// The reply.
    pub reply: Reply,
    /// The command's name, for the reply counter.
    pub command: &'static str,
}

/// What a byte is, for the checks that refuse some kinds of bytes: this
/// module's command lines and the header field names of `prepare`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ByteClass {
    /// A C0 control (HTAB included) or DEL.
    Control,
    /// SP.
    Space,
    /// Printable ASCII but SP (`!` to `~`: RFC 5322 `ftext` plus the colon).
    Printable,
    /// 0x80 and above.
    EightBit,
}

impl ByteClass {
    /// The class of `byte`.
    pub fn of(byte: u8) -> ByteClass {
        match byte {
            0x00..=0x1f | 0x7f => ByteClass::Control,
            b' ' => ByteClass::Space,
            0x21..=0x7e => ByteClass::Printable,
            0x80..=0xff => ByteClass::EightBit,
        }
    }
}

/// C0 controls and DEL; `tab` says whether HTAB passes.
fn is_control(byte: u8, tab: bool) -> bool {
    ByteClass::of(byte) == ByteClass::Control && !(tab && byte == b'\t')
}

/// The line without its line ending.
fn content(line: &[u8]) -> &[u8] {
    let line = line.strip_suffix(b"\n").unwrap_or(line);
    line.strip_suffix(b"\r").unwrap_or(line)
}

/// Whether the line starts with `verb` followed by a space or its end.
fn starts_with_verb(line: &[u8], verb: &[u8]) -> bool {
    line.len() >= verb.len()
        && line[..verb.len()].eq_ignore_ascii_case(verb)
        && line
            .get(verb.len())
            .is_none_or(|&b| b == b' ' || b == b'\t')
}

/// The path between `<` and its `>` (quotes and backslash escapes honoured,
/// an RFC 5321 source route dropped), and what follows the `>`.
fn raw_path(line: &[u8]) -> Option<(&[u8], &[u8])> {
    let (whole, rest) = bracketed(line)?;
    let mut path = whole;
    if path.first() == Some(&b'@') {
        // "@a,@b:user@c" (RFC 5321 section 4.1.2, to be ignored).
        let colon = path.iter().position(|&b| b == b':')?;
        path = &path[colon + 1..];
    }
    Some((path, rest))
}

/// Everything between `<` and its `>`, source route included, and what follows.
fn bracketed(line: &[u8]) -> Option<(&[u8], &[u8])> {
    let open = line.iter().position(|&b| b == b'<')?;
    let mut quoted = false;
    let mut escaped = false;
    for (i, &byte) in line.iter().enumerate().skip(open + 1) {
        match byte {
            _ if escaped => escaped = false,
            b'\\' if quoted => escaped = true,
            b'"' => quoted = !quoted,
            b'>' if !quoted => return Some((&line[open + 1..i], &line[i + 1..])),
            _ => {}
        }
    }
    None
}

/// The `SIZE=` parameter, saturated: a value too large for `usize` is `usize::MAX`,
/// which is over any limit. `None` when absent or not a number.
fn size_param(params: &[u8]) -> Option<usize> {
    params
        .split(|&b| b == b' ')
        .filter_map(|param| {
            let (key, value) = param.split_at(param.iter().position(|&b| b == b'=')?);
            key.eq_ignore_ascii_case(b"SIZE").then_some(&value[1..])
        })
        .find(|value| !value.is_empty() && value.iter().all(u8::is_ascii_digit))
        .map(|digits| {
            digits.iter().fold(0usize, |n, &d| {
                n.checked_mul(10)
                    .and_then(|n| n.checked_add(usize::from(d - b'0')))
                    .unwrap_or(usize::MAX)
            })
        })
}

/// Checks that come before smtp-proto's parse: a refusal, or `None` to parse.
pub(super) fn precheck(line: &[u8]) -> Option<Refusal> {
    let text = content(line);
    for (verb, command) in [(&b"MAIL"[..], "MAIL"), (b"RCPT", "RCPT")] {
        if !starts_with_verb(text, verb) {
            continue;
        }
        // The source route too: it is dropped later, but checked like the rest.
        let path = bracketed(text).map_or(text, |(path, _)| path);
        if path.iter().any(|&b| is_control(b, false)) {
            return Some(Refusal {
                reply: Reply::new(553, [5, 1, 3], "Address contains a control character"),
                command,
            });
        }
        if std::str::from_utf8(path).is_err() {
            return Some(Refusal {
                reply: Reply::new(553, [5, 6, 7], "Address is not valid UTF-8"),
                command,
            });
        }
        // The session checks the address it is given; 8-bit in a source
        // route, which is dropped before that, is checked here.
        let params = bracketed(text).map_or(&[][..], |(_, rest)| rest);
        let smtputf8 = params
            .split(|&b| b == b' ')
            .any(|p| p.eq_ignore_ascii_case(b"SMTPUTF8"));
        if command == "MAIL" && !path.is_ascii() && !smtputf8 {
            return Some(Refusal {
                reply: Reply::new(
                    553,
                    [5, 6, 7],
                    "Non-ASCII address needs MAIL FROM with SMTPUTF8",
                ),
                command,
            });
        }
    }
    let helo = starts_with_verb(text, b"EHLO") || starts_with_verb(text, b"HELO");
    // EHLO names a host: a C1 control or bytes that are not UTF-8 are no name.
    let bad_name = helo
        && std::str::from_utf8(text)
            .map_or(true, |t| t.chars().any(|c| c.is_control() && c != '\t'));
    if bad_name || text.iter().any(|&b| is_control(b, true)) {
        let command = if starts_with_verb(text, b"EHLO") {
            "EHLO"
        } else if starts_with_verb(text, b"HELO") {
            "HELO"
        } else {
            "INVALID"
        };
        return Some(Refusal {
            reply: Reply::new(501, [5, 5, 4], "Control character in command line"),
            command,
        });
    }
    None
}

/// Puts back what smtp-proto's parse lost: the path as written when it holds
/// a quoted local part, and the `SIZE=` value without wrapping.
pub(super) fn restore(line: &[u8], request: &mut Request<String>) {
    let Some((path, params)) = raw_path(content(line)) else {
        return;
    };
    let address = match request {
        Request::Mail { from } => {
            if let Some(size) = size_param(params) {
                from.size = size;
            }
            &mut from.address
        }
        Request::Rcpt { to } => &mut to.address,
        _ => return,
    };
    if path.contains(&b'"')
        && let Ok(path) = std::str::from_utf8(path)
    {
        *address = path.to_string();
    }
}

#[cfg(test)]
mod tests {
    use super::super::{Command, Input};
    use smtp_proto::Request;

    fn parse(line: &[u8]) -> Command {
        let mut input = Input::new();
        input.push(line);
        input.next_command().expect("a whole line")
    }

    fn refusal(line: &[u8]) -> Option<(u16, [u16; 3])> {
        match parse(line) {
            Command::Refused(refusal) => Some((refusal.reply.code, refusal.reply.status?)),
            _ => None,
        }
    }

    #[test]
    fn control_bytes_in_helo_are_refused() {
        for line in [
            &b"EHLO a\x01b\r\n"[..],
            b"EHLO a\x7fb\r\n",
            b"EHLO a\rb\r\n",
            b"HELO a\x00b\r\n",
            b"EHLO a\x1bb\r\n",
        ] {
            assert_eq!(refusal(line), Some((501, [5, 5, 4])), "{line:?}");
        }
        assert_eq!(refusal(b"EHLO a\tb\r\n"), None);
        assert!(matches!(
            parse(b"EHLO mx1.goo.ne.jp\r\n"),
            Command::Request(Request::Ehlo { host }) if host == "mx1.goo.ne.jp"
        ));
    }

    #[test]
    fn control_bytes_in_addresses_are_refused() {
        for line in [
            &b"MAIL FROM:<a\x01b@goo.ne.jp>\r\n"[..],
            b"MAIL FROM:<\"a\x01b\"@goo.ne.jp>\r\n",
            b"MAIL FROM:<\"a\tb\"@goo.ne.jp>\r\n",
            b"RCPT TO:<\"a\x7f\"@example.com>\r\n",
            b"RCPT TO:<a@b\x01c.example>\r\n",
            b"rcpt to:<\"\x0d\"@example.com>\r\n",
        ] {
            assert_eq!(refusal(line), Some((553, [5, 1, 3])), "{line:?}");
        }
    }

    #[test]
    fn invalid_utf8_addresses_are_refused() {
        assert_eq!(
            refusal(b"MAIL FROM:<\xff@goo.ne.jp>\r\n"),
            Some((553, [5, 6, 7]))
        );
    }

    #[test]
    fn quoted_local_parts_are_kept_as_written() {
        for (line, want) in [
            (
                &b"RCPT TO:<\"a b\"@example.com>\r\n"[..],
                "\"a b\"@example.com",
            ),
            (
                b"RCPT TO:<\"a\\\"b\"@example.com> NOTIFY=NEVER\r\n",
                "\"a\\\"b\"@example.com",
            ),
            (
                b"RCPT TO:<@a.example,@b.example:\"x y\"@c.example>\r\n",
                "\"x y\"@c.example",
            ),
            (b"RCPT TO:<plain@example.com>\r\n", "plain@example.com"),
        ] {
            let Command::Request(Request::Rcpt { to }) = parse(line) else {
                panic!("{line:?}")
            };
            assert_eq!(to.address, want);
        }
        let Command::Request(Request::Mail { from }) =
            parse(b"MAIL FROM:<\"a>b\"@goo.ne.jp> SIZE=100\r\n")
        else {
            panic!()
        };
        assert_eq!(
            (from.address.as_str(), from.size),
            ("\"a>b\"@goo.ne.jp", 100)
        );
    }

    #[test]
    fn an_overflowing_size_saturates() {
        for line in [
            &b"MAIL FROM:<a@goo.ne.jp> SIZE=1000000000000000000000000\r\n"[..],
            b"MAIL FROM:<a@goo.ne.jp> size=99999999999999999999999999999999999999999\r\n",
        ] {
            match parse(line) {
                Command::Request(Request::Mail { from }) => assert_eq!(from.size, usize::MAX),
                // smtp-proto refuses some overflowing values itself: 501, never 250.
                Command::Invalid(_) => {}
                other => panic!("{other:?}"),
            }
        }
        let Command::Request(Request::Mail { from }) =
            parse(b"MAIL FROM:<a@goo.ne.jp> BODY=8BITMIME SIZE=12345\r\n")
        else {
            panic!()
        };
        assert_eq!(from.size, 12345);
    }

    #[test]
    fn byte_classes_at_their_edges() {
        use super::ByteClass::{self, *};
        for (byte, class) in [
            (0x00, Control),
            (b'\t', Control),
            (0x1f, Control),
            (b' ', Space),
            (b'!', Printable),
            (b':', Printable),
            (b'~', Printable),
            (0x7f, Control),
            (0x80, EightBit),
            (0xff, EightBit),
        ] {
            assert_eq!(ByteClass::of(byte), class, "{byte:#04x}");
        }
        assert!(super::is_control(b'\t', false));
        assert!(!super::is_control(b'\t', true));
        assert!(super::is_control(0x7f, true));
        assert!(!super::is_control(b' ', false));
    }
}

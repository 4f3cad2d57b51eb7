//! SMTP replies with enhanced status codes (RFC 3463), and their wire form.

use std::borrow::Cow;
use std::fmt;

/// Longest reply text we send; upstream messages are cut to fit (RFC 5321 allows 512-octet reply lines).
const MAX_TEXT: usize = 400;

/// One SMTP reply: code, enhanced status code (absent only in the greeting and EHLO), text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply {
    /// Three-digit reply code.
    pub code: u16,
    /// Enhanced status code `class.subject.detail`.
    pub status: Option<[u16; 3]>,
    /// Human-readable text; a `\n` splits it into a multi-line reply.
    pub text: Cow<'static, str>,
}

impl Reply {
    /// A reply with an enhanced status code and fixed text.
    pub const fn new(code: u16, status: [u16; 3], text: &'static str) -> Reply {
        Reply {
            code,
            status: Some(status),
            text: Cow::Borrowed(text),
        }
    }

    /// A reply whose text comes from elsewhere (an upstream, an id): CR, LF and
    /// control characters are replaced and the length bounded, so an upstream
    /// cannot inject reply lines.
    pub fn dynamic(code: u16, status: [u16; 3], text: impl AsRef<str>) -> Reply {
        let clean: String = text
            .as_ref()
            .chars()
            .map(|c| match c {
                c if c.is_control() => ' ',
                // Reply text is ASCII (RFC 5321 section 4.2); 8-bit from a
                // client or an upstream is not repeated.
                c if !c.is_ascii() => '?',
                c => c,
            })
            .take(MAX_TEXT)
            .collect();
        Reply {
            code,
            status: Some(status),
            text: Cow::Owned(clean),
        }
    }

    /// A reply without an enhanced status code (greeting, EHLO: RFC 2034 section 3).
    pub fn plain(code: u16, text: impl Into<Cow<'static, str>>) -> Reply {
        Reply {
            code,
            status: None,
            text: text.into(),
        }
    }

    /// 2xx.
    pub fn is_positive(&self) -> bool {
        (200..300).contains(&self.code)
    }

    /// 5xx: the client should not retry.
    pub fn is_permanent(&self) -> bool {
        self.code >= 500
    }

    /// Appends the wire form (`250-...` continuation lines, CRLF endings) to `out`.
    pub fn write_to(&self, out: &mut Vec<u8>) {
        use std::io::Write;
        let mut lines = self.text.split('\n').peekable();
        while let Some(line) = lines.next() {
            let sep = if lines.peek().is_some() { '-' } else { ' ' };
            let _ = write!(out, "{}{sep}", self.code);
            if let Some([a, b, c]) = self.status {
                let _ = write!(out, "{a}.{b}.{c} ");
            }
            out.extend_from_slice(line.trim_end_matches('\r').as_bytes());
            out.extend_from_slice(b"\r\n");
        }
    }
}

impl fmt::Display for Reply {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.code)?;
        if let Some([a, b, c]) = self.status {
            write!(f, " {a}.{b}.{c}")?;
        }
        write!(f, " {}", self.text.replace('\n', " / "))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn wire(reply: &Reply) -> String {
        let mut out = Vec::new();
        reply.write_to(&mut out);
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn single_and_multi_line() {
        assert_eq!(wire(&Reply::new(250, [2, 1, 0], "Ok")), "250 2.1.0 Ok\r\n");
        assert_eq!(
            wire(&Reply::plain(250, "relay\nPIPELINING\nSIZE 10")),
            "250-relay\r\n250-PIPELINING\r\n250 SIZE 10\r\n"
        );
        assert_eq!(
            wire(&Reply::new(214, [2, 0, 0], "a\nb")),
            "214-2.0.0 a\r\n214 2.0.0 b\r\n"
        );
    }

    #[test]
    fn upstream_text_cannot_inject_lines() {
        let reply = Reply::dynamic(554, [5, 6, 0], "bad\r\n250 2.0.0 fake");
        assert_eq!(wire(&reply), "554 5.6.0 bad  250 2.0.0 fake\r\n");
        let long = Reply::dynamic(451, [4, 0, 0], "x".repeat(5000));
        assert!(wire(&long).len() < 420);
    }

    #[test]
    fn classes() {
        assert!(Reply::new(250, [2, 0, 0], "").is_positive());
        assert!(!Reply::new(451, [4, 0, 0], "").is_positive());
        assert!(!Reply::new(451, [4, 0, 0], "").is_permanent());
        assert!(Reply::new(554, [5, 0, 0], "").is_permanent());
        assert!(Reply::new(500, [5, 0, 0], "").is_permanent());
        assert!(!Reply::new(499, [4, 0, 0], "").is_permanent());
    }
}

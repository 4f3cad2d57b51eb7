//! Raw header-block handling: splitting a message into header fields and body
//! without decoding anything, so the bytes we do not touch reach SES exactly
//! as Postfix sent them.

use crate::connection::smtp::ByteClass;

/// One header field, folded continuation lines included.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Field<'a> {
    /// The field name, as written.
    pub name: &'a [u8],
    /// The whole field: name, colon, value and the CRLF of its last line.
    pub raw: &'a [u8],
}

impl Field<'_> {
    /// Case-insensitive name comparison (RFC 5322 field names are).
    pub fn is(&self, name: &str) -> bool {
        self.name.eq_ignore_ascii_case(name.as_bytes())
    }

    /// Whether the name is RFC 5322 `ftext` (printable ASCII but the colon),
    /// with at most SP or HTAB before the colon (the obsolete form): a field
    /// without a colon, or whose name holds anything else, is not plain.
    pub fn has_plain_name(&self) -> bool {
        let colon = self.raw.iter().position(|&b| b == b':');
        let Some(colon) = colon else {
            return false;
        };
        let name = &self.raw[..colon];
        let len = name
            .iter()
            .rposition(|&b| b != b' ' && b != b'\t')
            .map_or(0, |i| i + 1);
        len > 0
            && name[..len]
                .iter()
                .all(|&b| ByteClass::of(b) == ByteClass::Printable)
    }

    /// The value after the colon, unfolded line breaks kept.
    pub fn value(&self) -> &[u8] {
        let colon = self
            .raw
            .iter()
            .position(|&b| b == b':')
            .unwrap_or(self.raw.len());
        &self.raw[(colon + 1).min(self.raw.len())..]
    }
}

/// The header fields of `message`, and the offset where the rest (the blank
/// line and body) starts.
pub fn split(message: &[u8]) -> (Vec<Field<'_>>, usize) {
    let mut fields = Vec::with_capacity(24);
    let mut pos = 0;
    while pos < message.len() {
        let rest = &message[pos..];
        if rest.starts_with(b"\r\n") || rest.starts_with(b"\n") {
            break; // the blank line: the body follows
        }
        // A field runs until a line that does not start with white space (RFC 5322 folding).
        let mut end = 0;
        loop {
            match memchr::memchr(b'\n', &rest[end..]) {
                Some(lf) => {
                    end += lf + 1;
                    if !matches!(rest.get(end), Some(b' ' | b'\t')) {
                        break;
                    }
                }
                None => {
                    end = rest.len();
                    break;
                }
            }
        }
        let raw = &rest[..end];
        let name_end = raw.iter().position(|&b| b == b':').unwrap_or(0);
        let name = trim_end(&raw[..name_end]);
        fields.push(Field { name, raw });
        pos += end;
    }
    (fields, pos)
}

fn trim_end(bytes: &[u8]) -> &[u8] {
    let len = bytes
        .iter()
        .rposition(|b| !b.is_ascii_whitespace())
        .map_or(0, |i| i + 1);
    &bytes[..len]
}

/// The `d=` tag of a DKIM-Signature field value, lowercased. A byte that is
/// not UTF-8 elsewhere in the value does not hide the tag.
pub fn dkim_domain(value: &[u8]) -> Option<String> {
    super::dkim::tag_value(&String::from_utf8_lossy(value), "d").map(|d| d.to_ascii_lowercase())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_folded_fields_and_finds_the_body() {
        let msg = b"From: a@b.example\r\nSubject: one\r\n two\r\n\tthree\r\nTo: c@d.example\r\n\r\nbody\r\n";
        let (fields, body) = split(msg);
        assert_eq!(fields.len(), 3);
        assert!(fields[1].is("subject"));
        assert_eq!(fields[1].raw, b"Subject: one\r\n two\r\n\tthree\r\n");
        assert_eq!(&msg[body..], b"\r\nbody\r\n");
    }

    #[test]
    fn message_without_body_or_headers() {
        let (fields, body) = split(b"Subject: x\r\n");
        assert_eq!((fields.len(), body), (1, 12));
        let (fields, body) = split(b"\r\nonly body\r\n");
        assert_eq!((fields.len(), body), (0, 0));
        let (fields, _) = split(b"Subject: no final newline");
        assert_eq!(fields[0].raw, b"Subject: no final newline");
    }

    #[test]
    fn plain_field_names() {
        let name = |raw: &[u8]| split(raw).0[0].has_plain_name();
        assert!(name(b"From: a@b.example\r\n"));
        assert!(name(b"From : a@b.example\r\n"));
        assert!(name(b"X-Odd!Name#: v\r\n"));
        for raw in [
            &b"From\x0b: ceo@bank.example\r\n"[..],
            b"\x0bX-SES-CONFIGURATION-SET: evil\r\n",
            b"\x0cX-SES-TENANT-NAME: evil\r\n",
            b"Fr om: a@b.example\r\n",
            b"Fr\xc3\xb6m: a@b.example\r\n",
            b": no name\r\n",
            b"no colon at all\r\n",
        ] {
            assert!(!name(raw), "{raw:?}");
        }
    }

    #[test]
    fn dkim_d_tag() {
        assert_eq!(
            dkim_domain(b" v=1; a=rsa-sha256; d=Goo.NE.jp;\r\n s=x; b=abc").as_deref(),
            Some("goo.ne.jp")
        );
        assert_eq!(dkim_domain(b" v=1; s=x"), None);
        assert_eq!(
            dkim_domain(b" v=1; d=goo.ne.jp; z=\xff\xfe; b=x").as_deref(),
            Some("goo.ne.jp")
        );
    }

    #[test]
    fn the_value_is_everything_after_the_first_colon() {
        let value = |raw: &'static [u8]| split(raw).0[0].value().to_vec();
        assert_eq!(value(b"Subject: hi\r\n"), b" hi\r\n");
        // A value whose first byte is its first tag: nothing of the name or colon stays.
        assert_eq!(
            value(b"DKIM-Signature:d=goo.ne.jp; s=x; b=AAAA\r\n"),
            b"d=goo.ne.jp; s=x; b=AAAA\r\n"
        );
        assert_eq!(value(b"X-Time: 12:30\r\n"), b" 12:30\r\n");
        assert_eq!(value(b"From \t: a@b.example\r\n"), b" a@b.example\r\n");
        assert_eq!(
            value(b"Subject: one\r\n two\r\n\tthree\r\n"),
            b" one\r\n two\r\n\tthree\r\n"
        );
        assert_eq!(value(b"Empty:\r\n"), b"\r\n");
        assert_eq!(value(b"Empty:"), b"");
        assert_eq!(value(b"no colon at all\r\n"), b"");
    }

    #[test]
    fn the_d_tag_is_found_when_it_comes_first() {
        let domain = |raw: &'static [u8]| dkim_domain(split(raw).0[0].value());
        assert_eq!(
            domain(b"DKIM-Signature: d=goo.ne.jp; v=1; s=x; b=AAAA\r\n").as_deref(),
            Some("goo.ne.jp")
        );
        assert_eq!(
            domain(b"DKIM-Signature:d=GOO.ne.jp;s=x;b=AAAA\r\n").as_deref(),
            Some("goo.ne.jp")
        );
        assert_eq!(
            domain(b"DKIM-Signature:\r\n d=goo.ne.jp;\r\n\ts=x; b=AAAA\r\n").as_deref(),
            Some("goo.ne.jp")
        );
    }
}

//! Control characters out of the log. Much of what a log line carries was
//! written by someone outside: EHLO names, addresses, `X-SES-MESSAGE-TAGS`
//! values, upstream replies, PROXY parser errors, cutover reasons. A raw ESC,
//! BEL or OSC sequence in a text log can recolour, clear or retitle the
//! terminal of the operator reading it, and a raw CR or LF can forge a line.
//!
//! The text format escapes every field value and the message once, here,
//! in its field formatter ([`EscapedFields`]), so no call site can forget.
//! JSON escapes C0 controls itself (serde_json) but writes DEL and the C1
//! controls raw; [`JsonSafe`] escapes those in the finished line.
//!
//! The scheme: `\n`, `\r` and `\t` as such, the other C0 controls and DEL
//! as `\x1b`, `\x7f`, the C1 controls as `\u{9b}`. A backslash is left as it
//! is: Debug-formatted fields escape their own, and doubling it would make
//! every escaped value unreadable.

use std::fmt;
use std::io;

use tracing_subscriber::field::RecordFields;
use tracing_subscriber::fmt::format::{DefaultFields, Writer};
use tracing_subscriber::fmt::{FormatFields, MakeWriter};

/// Whether `c` is a C0 control, DEL or a C1 control.
pub fn is_control(c: char) -> bool {
    matches!(c, '\0'..='\x1f' | '\x7f' | '\u{80}'..='\u{9f}')
}

/// Writes `c`, a control character, in the log's escaped form.
fn write_escaped(out: &mut (impl fmt::Write + ?Sized), c: char) -> fmt::Result {
    match c {
        '\n' => out.write_str("\\n"),
        '\r' => out.write_str("\\r"),
        '\t' => out.write_str("\\t"),
        '\0'..='\x1f' | '\x7f' => write!(out, "\\x{:02x}", u32::from(c)),
        _ => write!(out, "\\u{{{:x}}}", u32::from(c)),
    }
}

/// `text` with every control character escaped, as the text log shows it.
pub fn escape_controls(text: &str) -> std::borrow::Cow<'_, str> {
    if !text.chars().any(is_control) {
        return std::borrow::Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len() + 8);
    let _ = Escaper(&mut out).write_str_escaped(text);
    std::borrow::Cow::Owned(out)
}

/// A `fmt::Write` that escapes control characters on their way through.
struct Escaper<'a, W: fmt::Write + ?Sized>(&'a mut W);

impl<W: fmt::Write + ?Sized> Escaper<'_, W> {
    fn write_str_escaped(&mut self, text: &str) -> fmt::Result {
        let mut rest = text;
        // Runs of plain text go through in one write.
        while let Some((at, c)) = rest.char_indices().find(|(_, c)| is_control(*c)) {
            self.0.write_str(&rest[..at])?;
            write_escaped(&mut *self.0, c)?;
            rest = &rest[at + c.len_utf8()..];
        }
        self.0.write_str(rest)
    }
}

impl<W: fmt::Write + ?Sized> fmt::Write for Escaper<'_, W> {
    fn write_str(&mut self, text: &str) -> fmt::Result {
        self.write_str_escaped(text)
    }
}

/// The text format's field formatter: tracing's own `key=value` layout, with
/// every control character of every field (the message included) escaped.
/// Span fields go through it too.
#[derive(Debug, Default)]
pub struct EscapedFields(DefaultFields);

impl EscapedFields {
    /// tracing's default layout, escaped.
    pub fn new() -> EscapedFields {
        EscapedFields(DefaultFields::new())
    }
}

impl<'writer> FormatFields<'writer> for EscapedFields {
    fn format_fields<R: RecordFields>(
        &self,
        mut writer: Writer<'writer>,
        fields: R,
    ) -> fmt::Result {
        // Field names are not painted: the escaper would show the paint as text.
        let mut escaper = Escaper(&mut writer);
        self.0.format_fields(Writer::new(&mut escaper), fields)
    }
}

/// The JSON format's writer: DEL and the C1 controls, which serde_json
/// leaves raw, become `\u007f`, `\u009b`. They can only stand inside a JSON
/// string (outside, JSON has only ASCII punctuation), where the escape means
/// the same character: the line stays valid JSON and says the same thing.
#[derive(Debug, Clone, Copy)]
pub struct JsonSafe<M>(pub M);

impl<'a, M: MakeWriter<'a>> MakeWriter<'a> for JsonSafe<M> {
    type Writer = JsonSafeWriter<M::Writer>;

    fn make_writer(&'a self) -> Self::Writer {
        JsonSafeWriter(self.0.make_writer())
    }
}

/// One line's writer behind [`JsonSafe`].
#[derive(Debug)]
pub struct JsonSafeWriter<W>(W);

impl<W: io::Write> io::Write for JsonSafeWriter<W> {
    fn write(&mut self, bytes: &[u8]) -> io::Result<usize> {
        // tracing writes each line whole, so a character is never split
        // across two calls; a lone byte at the end is passed on as it is.
        let mut out = Vec::with_capacity(bytes.len());
        let mut i = 0;
        while i < bytes.len() {
            match (bytes[i], bytes.get(i + 1)) {
                (0x7f, _) => {
                    out.extend_from_slice(b"\\u007f");
                    i += 1;
                }
                (0xc2, Some(&next @ 0x80..=0x9f)) => {
                    out.extend_from_slice(format!("\\u{:04x}", next).as_bytes());
                    i += 2;
                }
                (byte, _) => {
                    out.push(byte);
                    i += 1;
                }
            }
        }
        self.0.write_all(&out)?;
        Ok(bytes.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        self.0.flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_control_character_is_escaped_and_nothing_else() {
        assert_eq!(
            escape_controls("a\x1b]0;title\x07b\x08\r\n\t\x7f\u{9b}31m\0é\\"),
            "a\\x1b]0;title\\x07b\\x08\\r\\n\\t\\x7f\\u{9b}31m\\x00é\\"
        );
        assert!(matches!(
            escape_controls("plain text, 日本語"),
            std::borrow::Cow::Borrowed(_)
        ));
        for c in (0..=0x10ffff).filter_map(char::from_u32) {
            let escaped = escape_controls(c.encode_utf8(&mut [0; 4])).into_owned();
            assert!(!escaped.chars().any(is_control), "{c:?}");
            assert_eq!(escaped.len() > c.len_utf8(), is_control(c), "{c:?}");
        }
    }

    #[test]
    fn json_lines_lose_del_and_c1_and_stay_json() {
        use std::io::Write;
        let line = serde_json::json!({"tag": "x\u{7f}\u{9b}2J\u{85}y\x1b"}).to_string();
        let mut writer = JsonSafeWriter(Vec::new());
        writer.write_all(line.as_bytes()).unwrap();
        let out = String::from_utf8(writer.0).unwrap();
        assert!(!out.chars().any(is_control), "{out}");
        let back: serde_json::Value = serde_json::from_str(&out).unwrap();
        assert_eq!(back["tag"], "x\u{7f}\u{9b}2J\u{85}y\x1b");
    }
}

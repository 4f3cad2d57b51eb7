//! Logging: subscriber setup (text or JSON), the privacy rule of the
//! migration (addresses and client IPs are masked in logs unless
//! `[log] mask-pii = false`), control characters escaped (`escape`) and
//! lines an outsider can cause throttled (`throttle`).

mod escape;
mod throttle;

use std::borrow::Cow;
use std::io::IsTerminal;
use std::net::IpAddr;

use tracing::Subscriber;
use tracing_subscriber::EnvFilter;
use tracing_subscriber::fmt::MakeWriter;
use tracing_subscriber::util::SubscriberInitExt;

pub use escape::{EscapedFields, JsonSafe, JsonSafeWriter, escape_controls, is_control};
pub use throttle::LogThrottle;

use crate::config::{LogConfig, LogFormat};
use crate::net::canonical_ip;

/// Installs the global subscriber, writing to stderr. `RUST_LOG` overrides `log.level`.
pub fn init(config: &LogConfig) {
    // Logs go to stderr (journald and `docker logs` take both); stdout stays for command output.
    // Colour codes only for a person at a terminal: journald and files get plain text.
    let ansi = std::io::stderr().is_terminal();
    // try_init also forwards the `log` crate's records (rustls, some AWS crates).
    let _ = subscriber(config, std::io::stderr, ansi).try_init();
}

/// The subscriber `init` installs, writing to `writer` (tests give a buffer):
/// text with every field escaped ([`EscapedFields`]), or JSON without raw
/// DEL or C1 controls ([`JsonSafe`]).
pub fn subscriber<W>(config: &LogConfig, writer: W, ansi: bool) -> Box<dyn Subscriber + Send + Sync>
where
    W: for<'a> MakeWriter<'a> + Send + Sync + 'static,
{
    let filter =
        EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(&config.level));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_target(false)
        .with_ansi(ansi);
    match config.format {
        LogFormat::Json => Box::new(
            builder
                .with_writer(JsonSafe(writer))
                .json()
                .flatten_event(true)
                .finish(),
        ),
        LogFormat::Text => Box::new(
            builder
                .with_writer(writer)
                .fmt_fields(EscapedFields::new())
                .finish(),
        ),
    }
}

/// Applies (or not) the masking rule.
#[derive(Debug, Clone, Copy)]
pub struct Masker {
    enabled: bool,
}

impl Masker {
    /// Masks when `enabled`.
    pub fn new(enabled: bool) -> Masker {
        Masker { enabled }
    }

    /// An envelope address: `u***@goo***.***`; the null sender shows as `<>`.
    pub fn address<'a>(&self, address: &'a str) -> Cow<'a, str> {
        if address.is_empty() {
            Cow::Borrowed("<>")
        } else if self.enabled {
            Cow::Owned(mask_address(address))
        } else {
            Cow::Borrowed(address)
        }
    }

    /// A client IP: `202.*.*.*`, `2001:*`.
    pub fn ip(&self, ip: IpAddr) -> String {
        if self.enabled {
            mask_ip(ip)
        } else {
            canonical_ip(ip).to_string()
        }
    }

    /// Free text from an upstream (an SES error can quote an address): every
    /// word with an `@` in it is masked.
    pub fn text<'a>(&self, text: &'a str) -> Cow<'a, str> {
        if !self.enabled || !text.contains('@') {
            return Cow::Borrowed(text);
        }
        let masked: Vec<String> = text
            .split(' ')
            .map(|word| {
                if word.contains('@') {
                    let core = word.trim_matches(|c: char| "<>\"'(),;:[].".contains(c));
                    word.replace(core, &mask_address(core))
                } else {
                    word.to_string()
                }
            })
            .collect();
        Cow::Owned(masked.join(" "))
    }
}

/// `user@goo.ne.jp` → `u***@goo***.***`.
pub fn mask_address(address: &str) -> String {
    let (local, domain) = address.rsplit_once('@').unwrap_or((address, ""));
    let first: String = local.chars().take(1).collect();
    let mut out = format!("{first}***");
    if !domain.is_empty() {
        let (label, rest) = domain.split_once('.').unwrap_or((domain, ""));
        let head: String = label.chars().take(3).collect();
        out.push('@');
        out.push_str(&head);
        out.push_str("***");
        if !rest.is_empty() {
            out.push_str(".***");
        }
    }
    out
}

/// `202.217.1.2` → `202.*.*.*`; IPv6 keeps its first group.
pub fn mask_ip(ip: IpAddr) -> String {
    match canonical_ip(ip) {
        IpAddr::V4(v4) => format!("{}.*.*.*", v4.octets()[0]),
        IpAddr::V6(v6) => format!("{:x}:*", v6.segments()[0]),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_are_masked_like_the_migration_rule() {
        assert_eq!(mask_address("user@goo.ne.jp"), "u***@goo***.***");
        assert_eq!(mask_address("b@example.com"), "b***@exa***.***");
        assert_eq!(mask_address("postmaster"), "p***");
        assert_eq!(mask_address("x@localhost"), "x***@loc***");
        assert_eq!(mask_address("山田@例え.jp"), "山***@例え***.***");
    }

    /// A log written into memory.
    #[derive(Clone, Default)]
    struct Buffer(std::sync::Arc<std::sync::Mutex<Vec<u8>>>);

    impl std::io::Write for Buffer {
        fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(bytes);
            Ok(bytes.len())
        }

        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    /// Logs what an outsider controls the way the relay's call sites do
    /// (Display, Debug, error values, the message, span fields) and returns the log.
    fn log_hostile(format: LogFormat, ansi: bool) -> String {
        let hostile = "a\x1b]0;title\x07 \x1b[2J\x08\r\nINFO forged\t\x7f\u{9b}31m\u{85}z";
        let config = LogConfig {
            format,
            level: "info".into(),
            mask_pii: true,
        };
        let buffer = Buffer::default();
        let writer = buffer.clone();
        let subscriber = subscriber(&config, move || writer.clone(), ansi);
        tracing::subscriber::with_default(subscriber, || {
            let span = tracing::info_span!("session", helo = %hostile);
            let _entered = span.enter();
            let error = std::io::Error::other(hostile.to_string());
            // The SSM parameter's reason and PUT /cutover's, as the cutover logs them.
            tracing::warn!(reason = %hostile, tag = ?hostile, error = %error, "cutover {hostile}");
            tracing::error!("cannot start: {hostile}");
        });
        let bytes = buffer.0.lock().unwrap().clone();
        String::from_utf8(bytes).unwrap()
    }

    #[test]
    fn text_log_escapes_every_control_character_of_every_field() {
        let log = log_hostile(LogFormat::Text, false);
        let lines: Vec<&str> = log.lines().collect();
        assert_eq!(lines.len(), 2, "{log}");
        assert!(
            !log.split('\n').any(|line| line.chars().any(is_control)),
            "{log}"
        );
        assert!(log.ends_with('\n'));
        assert!(
            lines[0].contains(
                r"reason=a\x1b]0;title\x07 \x1b[2J\x08\r\nINFO forged\t\x7f\u{9b}31m\u{85}z"
            ),
            "{log}"
        );
        assert!(lines[0].contains(r"session{helo=a\x1b]0;title"), "{log}");
        // With colours for a terminal, only the formatter's own paint is raw.
        let log = log_hostile(LogFormat::Text, true);
        for c in log.chars().filter(|c| is_control(*c) && *c != '\n') {
            assert_eq!(c, '\x1b', "{log:?}");
        }
        assert!(
            !log.contains("\x1b]0;") && !log.contains("\x1b[2J"),
            "{log:?}"
        );
    }

    #[test]
    fn json_log_escapes_del_and_c1_too() {
        let log = log_hostile(LogFormat::Json, false);
        assert!(
            !log.split('\n').any(|line| line.chars().any(is_control)),
            "{log}"
        );
        for line in log.lines() {
            let value: serde_json::Value = serde_json::from_str(line).unwrap();
            assert!(
                value["message"].as_str().unwrap().contains('\u{9b}'),
                "{line}"
            );
        }
        assert_eq!(log.lines().count(), 2);
    }

    #[test]
    fn ips_are_masked() {
        assert_eq!(mask_ip("202.217.1.2".parse().unwrap()), "202.*.*.*");
        assert_eq!(mask_ip("::ffff:10.99.1.11".parse().unwrap()), "10.*.*.*");
        assert_eq!(mask_ip("2001:db8::1".parse().unwrap()), "2001:*");
    }

    #[test]
    fn masker_switch_and_free_text() {
        let on = Masker::new(true);
        let off = Masker::new(false);
        assert_eq!(on.address("user@goo.ne.jp"), "u***@goo***.***");
        assert_eq!(off.address("user@goo.ne.jp"), "user@goo.ne.jp");
        assert_eq!(on.address(""), "<>");
        assert_eq!(off.ip("::ffff:202.217.1.2".parse().unwrap()), "202.217.1.2");
        assert_eq!(
            on.text("Email address is not verified: <user@goo.ne.jp>, a@b.example."),
            "Email address is not verified: <u***@goo***.***>, a***@b***.***."
        );
    }
}

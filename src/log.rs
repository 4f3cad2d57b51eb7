//! Logging: subscriber setup (text or JSON) and the privacy rule of the
//! migration: addresses and client IPs are masked in logs unless
//! `[log] mask-pii = false`.

use std::borrow::Cow;
use std::io::IsTerminal;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use tracing_subscriber::EnvFilter;

use crate::config::{LogConfig, LogFormat};
use crate::net::canonical_ip;

/// Installs the global subscriber. `RUST_LOG` overrides `log.level`.
pub fn init(config: &LogConfig) {
    let filter =
        EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(&config.level));
    // Logs go to stderr (journald and `docker logs` take both); stdout stays for command output.
    // Colour codes only for a person at a terminal: journald and files get plain text.
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_target(false)
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(std::io::stderr);
    let _ = match config.format {
        LogFormat::Json => builder.json().flatten_event(true).try_init(),
        LogFormat::Text => builder.try_init(),
    };
}

/// Lets through at most `burst` log lines per `window` for one kind of event
/// (refused connections): a scanner or a misconfigured fleet must not flood
/// the journal. The counters (`ses_relay_smtp_connections_total`) still see
/// every event; the next line let through says how many were left out.
#[derive(Debug)]
pub struct LogThrottle {
    burst: u32,
    window: Duration,
    state: Mutex<ThrottleState>,
}

#[derive(Debug)]
struct ThrottleState {
    started: Option<Instant>,
    logged: u32,
    suppressed: u64,
}

impl LogThrottle {
    /// At most `burst` lines per `window`.
    pub const fn new(burst: u32, window: Duration) -> LogThrottle {
        LogThrottle {
            burst,
            window,
            state: Mutex::new(ThrottleState {
                started: None,
                logged: 0,
                suppressed: 0,
            }),
        }
    }

    /// `Some(n)` when this event may be logged, `n` being the events left out
    /// since the last line; `None` when it is to be left out.
    pub fn admit(&self) -> Option<u64> {
        self.admit_at(Instant::now())
    }

    fn admit_at(&self, now: Instant) -> Option<u64> {
        let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        let expired = state
            .started
            .is_none_or(|started| now.duration_since(started) >= self.window);
        if expired {
            state.started = Some(now);
            state.logged = 0;
        }
        if state.logged < self.burst {
            state.logged += 1;
            Some(std::mem::take(&mut state.suppressed))
        } else {
            state.suppressed += 1;
            None
        }
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

    #[test]
    fn throttle_lets_a_burst_through_then_counts_what_it_left_out() {
        let throttle = LogThrottle::new(2, Duration::from_secs(10));
        let t0 = Instant::now();
        assert_eq!(throttle.admit_at(t0), Some(0));
        assert_eq!(throttle.admit_at(t0), Some(0));
        for _ in 0..100 {
            assert_eq!(throttle.admit_at(t0 + Duration::from_secs(1)), None);
        }
        // A new window: the first line tells how many were left out.
        assert_eq!(throttle.admit_at(t0 + Duration::from_secs(10)), Some(100));
        assert_eq!(throttle.admit_at(t0 + Duration::from_secs(11)), Some(0));
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

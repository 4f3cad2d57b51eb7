//! Validation: every problem with its key, and warnings.

use std::path::Path;

use crate::daemon::descriptors::{
    DESCRIPTORS_PER_SESSION, DESCRIPTORS_RESERVED, descriptor_limit, descriptors_needed,
};
use crate::message::envelope::{MAX_TAGS, tag_text_problem};
use crate::net::canonical_ip;

use super::{
    Config, ConfigError, CutoverStore, LegacyMode, NEVER_SIGNED_HEADERS, Problem,
    SES_MAX_MESSAGE_SIZE, SES_MAX_RECIPIENTS, SesMode,
};

/// The lowest `ses.max-send-rate` other than 0 (off): one recipient per 100 s.
const MIN_SEND_RATE: f64 = 0.01;

impl Config {
    /// Checks meaning: every problem found, each with its key.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let mut problems = Vec::new();
        let mut bad = |key: &str, message: String| {
            problems.push(Problem {
                key: key.into(),
                message,
            })
        };
        let smtp = &self.smtp;
        if smtp.listen.is_empty() && smtp.listen_tls.is_empty() {
            bad(
                "smtp.listen",
                "no listener: set smtp.listen or smtp.listen-tls".into(),
            );
        }
        if !smtp.listen_tls.is_empty() && smtp.tls.is_none() {
            bad(
                "smtp.listen-tls",
                "implicit TLS listeners need [smtp.tls]".into(),
            );
        }
        if smtp.require_tls && smtp.tls.is_none() {
            bad("smtp.require-tls", "require-tls needs [smtp.tls]".into());
        }
        if smtp.hostname.is_empty() || smtp.hostname.contains(char::is_whitespace) {
            bad(
                "smtp.hostname",
                format!("`{}` is not a host name", smtp.hostname),
            );
        }
        if smtp.allowed_clients.is_empty() {
            bad(
                "smtp.allowed-clients",
                "empty: no client could connect".into(),
            );
        }
        if smtp.max_message_size.0 == 0 || smtp.max_message_size.0 > SES_MAX_MESSAGE_SIZE {
            bad(
                "smtp.max-message-size",
                format!(
                    "{} is outside 1..=40MiB (the SES v2 limit)",
                    smtp.max_message_size
                ),
            );
        }
        if !(1..=SES_MAX_RECIPIENTS).contains(&smtp.max_recipients) {
            bad(
                "smtp.max-recipients",
                format!(
                    "{} is outside 1..=50 (SES accepts at most 50)",
                    smtp.max_recipients
                ),
            );
        }
        if smtp.proxy_protocol && smtp.proxy_trusted.is_empty() {
            bad(
                "smtp.proxy-trusted",
                "empty while proxy-protocol is on: every connection would be refused".into(),
            );
        }
        if smtp.max_connections == 0 {
            bad("smtp.max-connections", "must be at least 1".into());
        }
        if let Some(problem) = descriptor_problem(smtp.max_connections, descriptor_limit()) {
            bad("smtp.max-connections", problem);
        }
        if smtp.max_data_memory.0 < smtp.max_message_size.0 {
            bad(
                "smtp.max-data-memory",
                format!(
                    "{} is less than smtp.max-message-size ({}): a message of the largest size could never be held",
                    smtp.max_data_memory, smtp.max_message_size
                ),
            );
        }
        for (key, value) in [
            ("smtp.idle-timeout", smtp.idle_timeout),
            ("smtp.max-session-duration", smtp.max_session_duration),
            ("ses.timeout", self.ses.timeout),
        ] {
            if value.0.is_zero() {
                bad(key, "must be longer than zero".into());
            }
        }
        if let Some(tls) = &smtp.tls {
            check_readable(&mut bad, "smtp.tls.cert", &tls.cert);
            check_readable(&mut bad, "smtp.tls.key", &tls.key);
        }
        for (i, key) in self.dkim.keys.iter().enumerate() {
            let at = |field: &str| format!("dkim.keys[{i}].{field}");
            if !is_domain(&key.domain) {
                bad(&at("domain"), format!("`{}` is not a domain", key.domain));
            }
            if key.selector.is_empty() || !key.selector.split('.').all(is_label) {
                bad(
                    &at("selector"),
                    format!("`{}` is not a selector", key.selector),
                );
            }
            check_readable(&mut bad, &at("private-key"), &key.private_key);
            // Several keys of one domain are its rotation set; a selector twice is a mistake.
            let dup = self.dkim.keys[..i]
                .iter()
                .any(|k| k.domain.eq_ignore_ascii_case(&key.domain) && k.selector == key.selector);
            if dup {
                bad(
                    &at("selector"),
                    format!(
                        "a second key for `{}` with selector `{}`",
                        key.domain, key.selector
                    ),
                );
            }
        }
        let dkim = &self.dkim;
        if dkim.rotation_check_interval.0.is_zero() {
            bad(
                "dkim.rotation-check-interval",
                "must be longer than zero".into(),
            );
        }
        if dkim.publish_confirmations == 0 {
            bad(
                "dkim.publish-confirmations",
                "must be at least 1: a key signs only after its record was seen".into(),
            );
        }
        if dkim.max_key_age.0.is_zero() {
            bad("dkim.max-key-age", "must be longer than zero".into());
        } else if dkim.rotation_notice.0 >= dkim.max_key_age.0 {
            // Either key may be the one to fix: both are named.
            bad(
                "dkim.max-key-age",
                format!(
                    "{} is not longer than dkim.rotation-notice ({})",
                    dkim.max_key_age, dkim.rotation_notice
                ),
            );
            bad(
                "dkim.rotation-notice",
                format!(
                    "{} is not shorter than dkim.max-key-age ({})",
                    dkim.rotation_notice, dkim.max_key_age
                ),
            );
        }
        if let Err(err) = dkim.resolver_addr() {
            bad("dkim.resolver", err.to_string());
        }
        if dkim.require_published && dkim.dns_check_interval.0.is_zero() && !dkim.keys.is_empty() {
            bad(
                "dkim.require-published",
                "needs the DNS check: dkim.dns-check-interval is 0".into(),
            );
        }
        for (i, header) in self.dkim.headers.iter().enumerate() {
            let never = NEVER_SIGNED_HEADERS
                .iter()
                .any(|h| h.eq_ignore_ascii_case(header));
            if never || header.to_ascii_lowercase().starts_with("x-ses-") {
                bad(
                    &format!("dkim.headers[{i}]"),
                    format!("`{header}` must not be signed: SES rewrites or adds it"),
                );
            }
        }
        let ses = &self.ses;
        if ses.configuration_set.is_empty() {
            bad(
                "ses.configuration-set",
                "empty: SES events would not reach the migration's dashboards".into(),
            );
        }
        let url = &ses.endpoint_url;
        if !(url.is_empty() || url.starts_with("http://") || url.starts_with("https://")) {
            bad(
                "ses.endpoint-url",
                format!("`{}` is not an http(s) URL", ses.endpoint_url),
            );
        }
        let rate = ses.max_send_rate;
        // NaN fails both comparisons; below 0.01/s a recipient would book
        // more than 100 s, which no one means (and 1e-300 overflows time).
        if !(rate == 0.0 || (MIN_SEND_RATE..=f64::MAX).contains(&rate)) {
            bad(
                "ses.max-send-rate",
                format!(
                    "{rate} is neither 0 (unlimited) nor a rate of at least {MIN_SEND_RATE} recipients per second"
                ),
            );
        }
        if ses.mode == SesMode::Outbox && ses.outbox_dir.as_os_str().is_empty() {
            bad("ses.outbox-dir", "outbox mode needs a directory".into());
        }
        for (name, value) in &ses.tags {
            let key = format!("ses.tags.{name}");
            if let Some(problem) = tag_text_problem(name) {
                bad(&key, format!("the tag name {problem} (SES refuses it)"));
            }
            if let Some(problem) = tag_text_problem(value) {
                bad(
                    &key,
                    format!("the value `{value}` {problem} (SES refuses it)"),
                );
            }
        }
        if ses.tags.len() > MAX_TAGS {
            bad(
                "ses.tags",
                format!("{} tags; SES takes at most {MAX_TAGS}", ses.tags.len()),
            );
        }
        if let Err(err) = self
            .log
            .level
            .parse::<tracing_subscriber::filter::EnvFilter>()
        {
            bad("log.level", format!("`{}`: {err}", self.log.level));
        }
        self.validate_cutover(&mut bad);
        self.validate_guard(&mut bad);
        if problems.is_empty() {
            Ok(())
        } else {
            Err(ConfigError::Invalid(problems))
        }
    }
}

impl Config {
    /// `[legacy]`, `[cutover]` and `[admin]`.
    fn validate_cutover(&self, bad: &mut impl FnMut(&str, String)) {
        if let Some(legacy) = &self.legacy {
            if legacy.mode == LegacyMode::Smtp && !is_host_port(&legacy.relay) {
                bad(
                    "legacy.relay",
                    format!("`{}` is not host:port", legacy.relay),
                );
            }
            if legacy.mode == LegacyMode::Outbox && legacy.outbox_dir.as_os_str().is_empty() {
                bad("legacy.outbox-dir", "outbox mode needs a directory".into());
            }
            if !legacy.ca_file.as_os_str().is_empty() {
                check_readable(bad, "legacy.ca-file", &legacy.ca_file);
            }
            if !legacy.auth_user.is_empty() {
                check_readable(bad, "legacy.auth-password-file", &legacy.auth_password_file);
            }
            if legacy.max_connections == 0 {
                bad("legacy.max-connections", "must be at least 1".into());
            }
            // Each pooled connection is a descriptor (and tokio's semaphore
            // holds at most usize::MAX >> 3 permits).
            let pool_limit = descriptor_limit()
                .unwrap_or(u64::MAX)
                .min(tokio::sync::Semaphore::MAX_PERMITS as u64);
            if legacy.max_connections as u64 > pool_limit {
                bad(
                    "legacy.max-connections",
                    format!(
                        "{} connections are more than this process can open ({pool_limit})",
                        legacy.max_connections
                    ),
                );
            }
            for (key, value) in [
                ("legacy.idle-timeout", legacy.idle_timeout),
                ("legacy.connect-timeout", legacy.connect_timeout),
                ("legacy.command-timeout", legacy.command_timeout),
            ] {
                if value.0.is_zero() {
                    bad(key, "must be longer than zero".into());
                }
            }
        }
        let percent = self.configured_ses_percent();
        if !percent.is_finite() || !(0.0..=100.0).contains(&percent) {
            bad(
                "cutover.ses-percent",
                format!("{percent} is outside 0..=100"),
            );
        } else if crate::message::route::check_percent(percent).is_err() {
            bad(
                "cutover.ses-percent",
                format!("{percent} has more than two decimals: the split resolves 0.01 %"),
            );
        } else if self.legacy.is_none() && percent < 100.0 {
            bad(
                "cutover.ses-percent",
                format!("{percent}% would go to the legacy route, but [legacy] is not configured"),
            );
        }
        for (i, rule) in self.cutover.rules.iter().enumerate() {
            let key = format!("cutover.rules[{i}]");
            if rule.clients.is_empty()
                && rule.sender_domains.is_empty()
                && rule.recipient_domains.is_empty()
            {
                bad(
                    &key,
                    "matches nothing: give clients, sender-domains or recipient-domains".into(),
                );
            }
            if rule.route == crate::message::route::Route::Legacy && self.legacy.is_none() {
                bad(
                    &format!("{key}.route"),
                    "routes to legacy, but [legacy] is not configured".into(),
                );
            }
            for domain in rule.sender_domains.iter().chain(&rule.recipient_domains) {
                if !domain.split('.').all(is_label) {
                    bad(&key, format!("`{domain}` is not a domain"));
                }
            }
        }
        if !self.admin.token_file.as_os_str().is_empty() {
            check_readable(bad, "admin.token-file", &self.admin.token_file);
        }
        if !self.admin.read_token_file.as_os_str().is_empty() {
            check_readable(bad, "admin.read-token-file", &self.admin.read_token_file);
        } else if let Some(addr) = self.admin.listen.filter(|a| !is_loopback(a.ip())) {
            bad(
                "admin.read-token-file",
                format!(
                    "admin.listen {addr} is not a loopback address: set a read token, \
                     or metrics and cutover state would be open to the network"
                ),
            );
        }
        self.validate_cutover_store(bad);
    }

    /// `[cutover] store`, `ssm-parameter`, `refresh-interval`, `endpoint-url`.
    fn validate_cutover_store(&self, bad: &mut impl FnMut(&str, String)) {
        let cutover = &self.cutover;
        let url = &cutover.endpoint_url;
        if !(url.is_empty() || url.starts_with("http://") || url.starts_with("https://")) {
            bad(
                "cutover.endpoint-url",
                format!("`{url}` is not an http(s) URL"),
            );
        }
        if cutover.store != CutoverStore::Ssm {
            return;
        }
        let name = &cutover.ssm_parameter;
        // SSM's rules for parameter names: letters, digits and `_.-/`, at most
        // 2048 characters, a hierarchy starting with `/`, no `aws`/`ssm` prefix.
        let lower = name.trim_start_matches('/').to_ascii_lowercase();
        if name.is_empty() {
            bad(
                "cutover.ssm-parameter",
                "empty: store = \"ssm\" needs the parameter's name".into(),
            );
        } else if name.len() > 2048
            || !name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"_.-/".contains(&b))
            || (name.contains('/') && !name.starts_with('/'))
            || lower.starts_with("aws")
            || lower.starts_with("ssm")
        {
            bad(
                "cutover.ssm-parameter",
                format!("`{name}` is not an SSM parameter name (e.g. /ses-relay/prod/cutover)"),
            );
        }
        if cutover.refresh_interval.0.is_zero() {
            bad(
                "cutover.refresh-interval",
                "must be longer than zero".into(),
            );
        }
    }
}

/// Whether `max_connections` sessions fit in `limit` file descriptors (the
/// hard `RLIMIT_NOFILE`, which `run` raises the soft one to; `None`:
/// unlimited). Past it, accept fails (EMFILE) well before the cap.
fn descriptor_problem(max_connections: usize, limit: Option<u64>) -> Option<String> {
    let needed = descriptors_needed(max_connections);
    let limit = limit.filter(|limit| needed > *limit)?;
    let fits = limit.saturating_sub(DESCRIPTORS_RESERVED) / DESCRIPTORS_PER_SESSION;
    Some(format!(
        "{max_connections} sessions need {needed} file descriptors \
         ({DESCRIPTORS_PER_SESSION} each plus {DESCRIPTORS_RESERVED}), but the limit is {limit} \
         (RLIMIT_NOFILE): set smtp.max-connections to at most {fits}, or raise the limit \
         (systemd LimitNOFILE=, ulimit -n)"
    ))
}

/// Loopback, IPv4-mapped IPv6 (`::ffff:127.0.0.1`) included.
pub fn is_loopback(ip: std::net::IpAddr) -> bool {
    canonical_ip(ip).is_loopback()
}

fn check_readable(bad: &mut impl FnMut(&str, String), key: &str, path: &Path) {
    if let Err(err) = std::fs::File::open(path) {
        bad(key, format!("cannot read {}: {err}", path.display()));
    }
}

/// A DNS label as selectors and domains use them (letters, digits, `-`, `_`).
pub(crate) fn is_label(label: &str) -> bool {
    !label.is_empty()
        && label.len() <= 63
        && label
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// A domain name of at least two labels.
pub(crate) fn is_domain(domain: &str) -> bool {
    domain.len() <= 253 && domain.contains('.') && domain.split('.').all(is_label)
}

/// `host:port` (host a name, an IPv4 address or a bracketed IPv6 address).
fn is_host_port(text: &str) -> bool {
    match text.rsplit_once(':') {
        Some((host, port)) => !host.is_empty() && port.parse::<u16>().is_ok_and(|p| p > 0),
        None => false,
    }
}

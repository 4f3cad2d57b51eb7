//! Configuration: typed sections, loading (TOML file + `SES_RELAY__SECTION__KEY`
//! environment overrides) and validation that reports every problem with its key.
//!
//! `load_*` only parses; [`Config::validate`] checks meaning (networks, files,
//! limits). `ses-relay check-config` runs exactly these two steps.

mod units;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use ipnet::IpNet;
use serde::{Deserialize, Serialize};

pub use units::{ByteSize, HumanDuration};

/// The dev config compiled into the binary (`ses-relay run --dev`): loopback, demo key, outbox.
pub const EMBEDDED_DEV_CONFIG: &str = include_str!("../../etc/ses-relay.dev.toml");

/// Prefix of environment overrides: `SES_RELAY__SMTP__MAX_RECIPIENTS=20`.
pub const ENV_PREFIX: &str = "SES_RELAY__";

/// SES v2 accepts at most 50 recipients per message.
pub const SES_MAX_RECIPIENTS: usize = 50;

/// SES v2 accepts messages up to 40 MiB (raw, after encoding).
pub const SES_MAX_MESSAGE_SIZE: u64 = 40 << 20;

/// The whole configuration file.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case", default)]
pub struct Config {
    /// SMTP ingress: listeners, client admission and limits.
    pub smtp: SmtpConfig,
    /// DKIM signing keys and policy.
    pub dkim: DkimConfig,
    /// The SES route: API client or dry-run outbox.
    pub ses: SesConfig,
    /// Log format and privacy.
    pub log: LogConfig,
}

/// `[smtp]`: what Postfix talks to.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case", default)]
pub struct SmtpConfig {
    /// Plaintext listeners; STARTTLS is offered on them when `[smtp.tls]` is set.
    pub listen: Vec<SocketAddr>,
    /// Implicit-TLS listeners (port 465 style); need `[smtp.tls]`.
    pub listen_tls: Vec<SocketAddr>,
    /// Name used in the banner, the EHLO reply and the Received header.
    pub hostname: String,
    /// Client networks admitted; everybody else gets `554 5.7.1` at connect.
    pub allowed_clients: Vec<IpNet>,
    /// Largest message accepted, advertised in the EHLO SIZE keyword.
    pub max_message_size: ByteSize,
    /// Recipients per transaction; more get `452 4.5.3` and Postfix sends them in another one.
    pub max_recipients: usize,
    /// Concurrent sessions; a client past this gets `421 4.3.2` at once.
    pub max_connections: usize,
    /// Refuse MAIL (`530 5.7.0`) until the client has started TLS.
    pub require_tls: bool,
    /// A client silent this long gets `421 4.4.2` and is closed.
    pub idle_timeout: HumanDuration,
    /// Hard limit on one connection's lifetime, whatever it does.
    pub max_session_duration: HumanDuration,
    /// On SIGTERM, how long transactions in flight may take to finish.
    pub shutdown_grace: HumanDuration,
    /// Certificate and key for STARTTLS and `listen-tls`; absent = no TLS.
    pub tls: Option<TlsConfig>,
}

/// `[smtp.tls]`: PEM files for the server certificate.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct TlsConfig {
    /// Certificate chain, leaf first (PEM).
    pub cert: PathBuf,
    /// Private key (PEM: PKCS#8, PKCS#1 or SEC1).
    pub key: PathBuf,
}

/// `[dkim]`: signing keys and which headers they cover.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case", default)]
pub struct DkimConfig {
    /// One entry per signing domain.
    pub keys: Vec<DkimKeyConfig>,
    /// Sign a From in a subdomain (news.goo.ne.jp) with the parent domain's key.
    pub sign_subdomains: bool,
    /// Headers to sign when present, in this order; From is always signed, twice.
    pub headers: Vec<String>,
}

/// One `[[dkim.keys]]` entry.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct DkimKeyConfig {
    /// The `d=` domain; messages whose header From is in it are signed.
    pub domain: String,
    /// The `s=` selector; the public key lives at `<selector>._domainkey.<domain>`.
    pub selector: String,
    /// PEM private key: RSA (PKCS#1 or PKCS#8, >= 2048 bits) or Ed25519 (PKCS#8).
    pub private_key: PathBuf,
}

/// How the SES route delivers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum SesMode {
    /// Call the SES v2 SendEmail API.
    Api,
    /// Dry run: write each message into `outbox-dir`.
    Outbox,
}

/// `[ses]`: the SES v2 API client.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case", default)]
pub struct SesConfig {
    /// `api` sends through SES; `outbox` writes files instead (dry run).
    pub mode: SesMode,
    /// AWS region; empty = the standard AWS chain (AWS_REGION, profile).
    pub region: String,
    /// Configuration set named in `X-SES-CONFIGURATION-SET` and in the API call.
    pub configuration_set: String,
    /// Override of the SES endpoint (tests, emulators); empty = AWS.
    pub endpoint_url: String,
    /// Bound on the whole SendEmail call, SDK retries included.
    pub timeout: HumanDuration,
    /// Recipients per second across this instance (SES counts recipients); 0 = unlimited.
    pub max_send_rate: f64,
    /// Where `outbox` mode writes `<id>.eml` and `<id>.json`.
    pub outbox_dir: PathBuf,
}

/// Log output format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line.
    Json,
}

/// `[log]`
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case", default)]
pub struct LogConfig {
    /// `text` or `json`.
    pub format: LogFormat,
    /// Default level filter (overridden by `RUST_LOG`).
    pub level: String,
    /// Mask addresses and client IPs (`u***@goo***.***`, `202.*.*.*`).
    pub mask_pii: bool,
}

impl Default for SmtpConfig {
    fn default() -> Self {
        SmtpConfig {
            listen: vec![SocketAddr::from(([127, 0, 0, 1], 2525))],
            listen_tls: Vec::new(),
            hostname: "relay.example.com".into(),
            allowed_clients: vec!["127.0.0.0/8".parse().unwrap(), "::1/128".parse().unwrap()],
            max_message_size: ByteSize(SES_MAX_MESSAGE_SIZE),
            max_recipients: SES_MAX_RECIPIENTS,
            max_connections: 1000,
            require_tls: false,
            idle_timeout: HumanDuration(std::time::Duration::from_secs(300)),
            max_session_duration: HumanDuration(std::time::Duration::from_secs(3600)),
            shutdown_grace: HumanDuration(std::time::Duration::from_secs(30)),
            tls: None,
        }
    }
}

/// Signed when present (the list; AWS "Manual DKIM signing" excludes the rest).
pub const DEFAULT_SIGNED_HEADERS: &[&str] = &[
    "From",
    "Sender",
    "Reply-To",
    "Subject",
    "To",
    "Cc",
    "MIME-Version",
    "Content-Type",
    "Content-Transfer-Encoding",
    "In-Reply-To",
    "References",
    "List-Id",
    "List-Unsubscribe",
    "List-Unsubscribe-Post",
];

/// Headers SES rewrites or adds, or that change on every hop: signing them breaks the signature.
pub const NEVER_SIGNED_HEADERS: &[&str] = &[
    "Message-ID",
    "Date",
    "Return-Path",
    "Bounces-To",
    "Received",
    "DKIM-Signature",
];

impl Default for DkimConfig {
    fn default() -> Self {
        DkimConfig {
            keys: Vec::new(),
            sign_subdomains: true,
            headers: DEFAULT_SIGNED_HEADERS
                .iter()
                .map(|h| h.to_string())
                .collect(),
        }
    }
}

impl Default for SesConfig {
    fn default() -> Self {
        SesConfig {
            mode: SesMode::Api,
            region: "ap-northeast-1".into(),
            configuration_set: String::new(),
            endpoint_url: String::new(),
            timeout: HumanDuration(std::time::Duration::from_secs(30)),
            max_send_rate: 0.0,
            outbox_dir: PathBuf::from("/var/lib/ses-relay/outbox"),
        }
    }
}

impl Default for LogConfig {
    fn default() -> Self {
        LogConfig {
            format: LogFormat::Text,
            level: "info".into(),
            mask_pii: true,
        }
    }
}

/// One thing wrong with a configuration, named by its key (`smtp.max-recipients`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// Dotted key path, as written in the file.
    pub key: String,
    /// What is wrong and what is expected.
    pub message: String,
}

impl std::fmt::Display for Problem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.key, self.message)
    }
}

/// Why a configuration could not be used.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file is missing, not TOML, or has unknown keys or wrong types.
    #[error("{0}")]
    Parse(String),
    /// The file parsed but some values are unusable.
    #[error("{} problem(s): {}", .0.len(), .0.iter().map(|p| p.to_string()).collect::<Vec<_>>().join("; "))]
    Invalid(Vec<Problem>),
}

impl Config {
    /// Loads a TOML file, then applies `SES_RELAY__*` environment overrides.
    pub fn load_file(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path)
            .map_err(|err| ConfigError::Parse(format!("cannot read {}: {err}", path.display())))?;
        Self::load_str(&text, std::env::vars())
            .map_err(|err| ConfigError::Parse(format!("{}: {err}", path.display())))
    }

    /// Parses TOML text with the given environment (injectable for tests).
    pub fn load_str(
        text: &str,
        env: impl IntoIterator<Item = (String, String)>,
    ) -> Result<Config, ConfigError> {
        let overrides = env_overrides(env)?;
        config::Config::builder()
            .add_source(config::File::from_str(text, config::FileFormat::Toml))
            .add_source(config::File::from_str(&overrides, config::FileFormat::Toml))
            .build()
            .and_then(|c| c.try_deserialize())
            .map_err(|err| ConfigError::Parse(err.to_string()))
    }

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
        if smtp.max_connections == 0 {
            bad("smtp.max-connections", "must be at least 1".into());
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
            let dup = self.dkim.keys[..i]
                .iter()
                .any(|k| k.domain.eq_ignore_ascii_case(&key.domain));
            if dup {
                bad(&at("domain"), format!("a second key for `{}`", key.domain));
            }
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
        if !ses.max_send_rate.is_finite() || ses.max_send_rate < 0.0 {
            bad(
                "ses.max-send-rate",
                "must be 0 (unlimited) or a positive rate".into(),
            );
        }
        if ses.mode == SesMode::Outbox && ses.outbox_dir.as_os_str().is_empty() {
            bad("ses.outbox-dir", "outbox mode needs a directory".into());
        }
        if let Err(err) = self
            .log
            .level
            .parse::<tracing_subscriber::filter::EnvFilter>()
        {
            bad("log.level", format!("`{}`: {err}", self.log.level));
        }
        if problems.is_empty() {
            Ok(())
        } else {
            Err(ConfigError::Invalid(problems))
        }
    }
}

impl Config {
    /// Things that work but should not be so: private keys readable by other users.
    pub fn warnings(&self) -> Vec<Problem> {
        let mut keys: Vec<(String, &Path)> = self
            .dkim
            .keys
            .iter()
            .enumerate()
            .map(|(i, k)| {
                (
                    format!("dkim.keys[{i}].private-key"),
                    k.private_key.as_path(),
                )
            })
            .collect();
        if let Some(tls) = &self.smtp.tls {
            keys.push(("smtp.tls.key".into(), tls.key.as_path()));
        }
        keys.into_iter()
            .filter(|(_, path)| readable_by_others(path))
            .map(|(key, path)| Problem {
                key,
                message: format!("{} is readable by other users (chmod 600)", path.display()),
            })
            .collect()
    }
}

#[cfg(unix)]
fn readable_by_others(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path).is_ok_and(|m| m.permissions().mode() & 0o004 != 0)
}

#[cfg(not(unix))]
fn readable_by_others(_path: &Path) -> bool {
    false
}

/// Turns `SES_RELAY__SMTP__MAX_RECIPIENTS=20` into a TOML overlay `[smtp]\nmax-recipients = 20`.
///
/// The `config` crate's own `Environment` source splits on the separator and
/// lowercases, but keeps `_`, so `MAX_RECIPIENTS` would become `max_recipients`
/// and never match the kebab-case key (the separator pitfall). Here `_` inside a
/// segment becomes `-`. A value that is a valid TOML value (number, bool,
/// array) is taken as such; anything else is a string.
fn env_overrides(env: impl IntoIterator<Item = (String, String)>) -> Result<String, ConfigError> {
    let mut overlay = toml::Table::new();
    for (name, raw) in env {
        let Some(path) = name.strip_prefix(ENV_PREFIX) else {
            continue;
        };
        let keys: Vec<String> = path
            .split("__")
            .map(|seg| seg.to_ascii_lowercase().replace('_', "-"))
            .collect();
        if keys.iter().any(String::is_empty) {
            return Err(ConfigError::Parse(format!(
                "environment variable {name}: empty key segment"
            )));
        }
        let value = match toml::from_str::<toml::Table>(&format!("v = {raw}")) {
            Ok(mut t) => t.remove("v").unwrap_or(toml::Value::String(raw.clone())),
            Err(_) => toml::Value::String(raw.clone()),
        };
        let (last, parents) = keys.split_last().expect("split yields one segment");
        let mut table = &mut overlay;
        for key in parents {
            let entry = table
                .entry(key.clone())
                .or_insert_with(|| toml::Value::Table(toml::Table::new()));
            table = match entry {
                toml::Value::Table(t) => t,
                _ => {
                    return Err(ConfigError::Parse(format!(
                        "environment variable {name}: `{key}` is not a section"
                    )));
                }
            };
        }
        table.insert(last.clone(), value);
    }
    Ok(overlay.to_string())
}

fn check_readable(bad: &mut impl FnMut(&str, String), key: &str, path: &Path) {
    if let Err(err) = std::fs::File::open(path) {
        bad(key, format!("cannot read {}: {err}", path.display()));
    }
}

fn is_label(label: &str) -> bool {
    !label.is_empty()
        && label.len() <= 63
        && label
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

fn is_domain(domain: &str) -> bool {
    domain.len() <= 253 && domain.contains('.') && domain.split('.').all(is_label)
}

#[cfg(test)]
mod tests;

//! The config file's sections as typed structs, each field with its default.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;

use ipnet::IpNet;
use serde::{Deserialize, Serialize};

use super::{ByteSize, HumanDuration, KeyDate, SES_MAX_MESSAGE_SIZE, SES_MAX_RECIPIENTS};

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
    /// Message bytes held across all sessions at once (received and not yet
    /// delivered); a DATA that would pass it is drained and answered `452 4.3.1`.
    pub max_data_memory: ByteSize,
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
    /// Behind a load balancer: connections from `proxy-trusted` must start
    /// with a PROXY protocol v1 or v2 header, whose source address is the
    /// client; any other peer is refused with `554 5.7.1`.
    pub proxy_protocol: bool,
    /// The load balancers' networks, trusted to send a PROXY header.
    pub proxy_trusted: Vec<IpNet>,
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
    /// How often the running relay checks each key's DNS record (`ses_relay_dkim_dns_consistent`); 0 = never.
    pub dns_check_interval: HumanDuration,
    /// How often the check runs instead while a rotation is pending (a
    /// configured key newer than the signing one), so the switch follows
    /// the record's publication closely.
    pub rotation_check_interval: HumanDuration,
    /// Consecutive checks whose answer matches a newer key's private key
    /// before that key signs (one answer may come from one of several
    /// name servers that already has the record while the others do not).
    pub publish_confirmations: u32,
    /// Age of the signing key past which it should be rotated (the plan's
    /// `BYODKIMRotationInterval`); `SesRelayDkimKeyExpiring` fires at
    /// `max-key-age - rotation-notice`.
    pub max_key_age: HumanDuration,
    /// How long before `max-key-age` the rotation is announced.
    pub rotation_notice: HumanDuration,
    /// Refuse to start when no key of a domain has a matching DNS record
    /// (default: sign with the first key of the domain and warn).
    pub require_published: bool,
    /// The name server the DNS check asks, `IP:PORT` (or an IP, port 53);
    /// empty = the system's (`/etc/resolv.conf`).
    pub resolver: String,
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
    /// When the key was made (`YYYY-MM-DD`, UTC), for its age; absent = the
    /// key file's modification time.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub created: Option<KeyDate>,
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
    /// Bound on the whole SendEmail call, retries included.
    pub timeout: HumanDuration,
    /// Recipients per second across this instance (SES counts recipients); 0 = unlimited.
    pub max_send_rate: f64,
    /// Where `outbox` mode writes `<id>.eml` and `<id>.json`.
    pub outbox_dir: PathBuf,
    /// Message tags (`EmailTags`) sent with every SES message, name to value;
    /// they win over a message's own `X-SES-MESSAGE-TAGS` of the same name.
    pub tags: BTreeMap<String, String>,
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

impl SmtpConfig {
    /// Whether a client at `ip` is in `allowed-clients`; IPv4-mapped IPv6
    /// peers match IPv4 networks.
    pub fn admits(&self, ip: std::net::IpAddr) -> bool {
        let ip = ip.to_canonical();
        self.allowed_clients.iter().any(|net| net.contains(&ip))
    }
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
            max_data_memory: ByteSize(1 << 30),
            require_tls: false,
            idle_timeout: HumanDuration(std::time::Duration::from_secs(300)),
            max_session_duration: HumanDuration(std::time::Duration::from_secs(3600)),
            shutdown_grace: HumanDuration(std::time::Duration::from_secs(30)),
            tls: None,
            proxy_protocol: false,
            proxy_trusted: Vec::new(),
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
            dns_check_interval: HumanDuration(std::time::Duration::from_secs(3600)),
            rotation_check_interval: HumanDuration(std::time::Duration::from_secs(60)),
            publish_confirmations: 3,
            max_key_age: HumanDuration(std::time::Duration::from_secs(365 * 86400)),
            rotation_notice: HumanDuration(std::time::Duration::from_secs(30 * 86400)),
            require_published: false,
            resolver: String::new(),
        }
    }
}

/// `[dkim] resolver` is neither `IP:PORT` nor an IP address.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("`{0}` is not IP:PORT or an IP address (e.g. 127.0.0.1:5353)")]
pub struct ResolverAddrError(pub String);

impl DkimConfig {
    /// `resolver` as an address: `None` for the system's, port 53 when only an IP is given.
    pub fn resolver_addr(&self) -> Result<Option<SocketAddr>, ResolverAddrError> {
        let text = self.resolver.trim();
        if text.is_empty() {
            return Ok(None);
        }
        if let Ok(addr) = text.parse::<SocketAddr>() {
            return Ok(Some(addr));
        }
        text.parse::<std::net::IpAddr>()
            .map(|ip| Some(SocketAddr::new(ip, 53)))
            .map_err(|_| ResolverAddrError(text.to_string()))
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
            tags: BTreeMap::new(),
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

/// How the legacy route delivers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum LegacyMode {
    /// Proxy each transaction to the legacy relay over SMTP.
    Smtp,
    /// Dry run: write each message into `outbox-dir`.
    Outbox,
}

/// STARTTLS toward the legacy relay.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum LegacyTls {
    /// Plaintext only.
    None,
    /// STARTTLS when offered, without certificate checks (as Postfix's `may`).
    Opportunistic,
    /// STARTTLS required and the certificate verified (against `ca-file` or the system roots).
    Required,
}

/// `[legacy]`: the relay being migrated away from. Absent: no legacy route.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case", default)]
pub struct LegacyConfig {
    /// `smtp` proxies to `relay`; `outbox` writes files (dry run).
    pub mode: LegacyMode,
    /// `host:port` of the legacy relay.
    pub relay: String,
    /// `none`, `opportunistic` or `required`.
    pub tls: LegacyTls,
    /// CA bundle (PEM) for `tls = "required"`; empty = the system roots.
    pub ca_file: PathBuf,
    /// AUTH user; empty = no AUTH.
    pub auth_user: String,
    /// File holding the AUTH password (never the config file).
    pub auth_password_file: PathBuf,
    /// Connections to the legacy relay, pooled and reused.
    pub max_connections: usize,
    /// A pooled connection unused this long is closed.
    pub idle_timeout: HumanDuration,
    /// Bound on connecting and the greeting.
    pub connect_timeout: HumanDuration,
    /// Bound on each command's reply (RFC 5321 section 4.5.3.2 suggests minutes for DATA).
    pub command_timeout: HumanDuration,
    /// DKIM-sign messages on this route too.
    pub dkim_sign: bool,
    /// Where `outbox` mode writes.
    pub outbox_dir: PathBuf,
}

impl Default for LegacyConfig {
    fn default() -> Self {
        LegacyConfig {
            mode: LegacyMode::Smtp,
            relay: String::new(),
            tls: LegacyTls::Opportunistic,
            ca_file: PathBuf::new(),
            auth_user: String::new(),
            auth_password_file: PathBuf::new(),
            max_connections: 100,
            idle_timeout: HumanDuration(std::time::Duration::from_secs(60)),
            connect_timeout: HumanDuration(std::time::Duration::from_secs(10)),
            command_timeout: HumanDuration(std::time::Duration::from_secs(300)),
            dkim_sign: true,
            outbox_dir: PathBuf::from("/var/lib/ses-relay/outbox"),
        }
    }
}

/// `[cutover]`: how traffic is split between the routes.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case", default)]
pub struct CutoverConfig {
    /// Share of transactions (by sender and first recipient) sent to SES, 0 to 100, fractions allowed.
    /// Default: 0 when `[legacy]` is configured (nothing moves until an operator says so), else 100.
    pub ses_percent: Option<f64>,
    /// Where runtime changes are kept; it wins over `ses-percent` at startup. Empty = not kept.
    pub state_file: PathBuf,
    /// Overrides, first match wins.
    pub rules: Vec<RuleConfig>,
    /// Where the percentage is kept: `file` (`state-file`, one relay) or `ssm`
    /// (one SSM parameter shared by a fleet; `state-file` then caches it).
    pub store: CutoverStore,
    /// The SSM parameter (`store = "ssm"`), e.g. `/ses-relay/prod/cutover`.
    pub ssm_parameter: String,
    /// How often each relay reads the SSM parameter and applies a newer version.
    pub refresh_interval: HumanDuration,
    /// Override of the SSM endpoint (tests, VPC endpoints); empty = AWS.
    pub endpoint_url: String,
}

/// `[cutover] store`: where the percentage is kept.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum CutoverStore {
    /// `cutover.state-file`, this relay only.
    File,
    /// An SSM Parameter Store parameter shared by every relay.
    Ssm,
}

impl Default for CutoverConfig {
    fn default() -> Self {
        CutoverConfig {
            ses_percent: None,
            state_file: PathBuf::from("/var/lib/ses-relay/cutover.json"),
            rules: Vec::new(),
            store: CutoverStore::File,
            ssm_parameter: String::new(),
            refresh_interval: HumanDuration(std::time::Duration::from_secs(10)),
            endpoint_url: String::new(),
        }
    }
}

/// One `[[cutover.rules]]` entry: matches when any of its lists does.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct RuleConfig {
    /// Client networks.
    #[serde(default)]
    pub clients: Vec<IpNet>,
    /// Envelope sender domains (and their subdomains).
    #[serde(default)]
    pub sender_domains: Vec<String>,
    /// Domains (and subdomains) of the transaction's first recipient.
    #[serde(default)]
    pub recipient_domains: Vec<String>,
    /// `ses` or `legacy`.
    pub route: crate::message::route::Route,
}

impl RuleConfig {
    /// The router's rule.
    pub fn rule(&self) -> crate::message::route::Rule {
        crate::message::route::Rule::new(
            self.clients.clone(),
            &self.sender_domains,
            &self.recipient_domains,
            self.route,
        )
    }
}

/// `[admin]`: the HTTP listener for operators (cutover, health).
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case", default)]
pub struct AdminConfig {
    /// Address of the admin HTTP API; keep it on loopback or a management network.
    pub listen: Option<SocketAddr>,
    /// File with the bearer token that `PUT /cutover` requires; empty = changes refused.
    pub token_file: PathBuf,
    /// File with the bearer token for reads (`GET /cutover`, `/metrics`, `/`, `/runbook`).
    /// Required when `listen` is not a loopback address; when set, reads need
    /// it (or the write token) wherever the API listens.
    pub read_token_file: PathBuf,
}

impl Default for AdminConfig {
    fn default() -> Self {
        AdminConfig {
            listen: Some(SocketAddr::from(([127, 0, 0, 1], 9925))),
            token_file: PathBuf::new(),
            read_token_file: PathBuf::new(),
        }
    }
}

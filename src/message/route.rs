//! Routes: where a transaction goes, and the router that picks one.
//!
//! The route is picked at the first RCPT, from the client address, the
//! envelope sender and the first recipient, because a proxying route must
//! know it before it can pass RCPT on. The built-in rules come first (SES
//! cannot deliver some transactions at all, whatever the operator's rules
//! say), then the configured rules, in order; otherwise the percentage split:
//!
//! ```text
//! bucket = xxh3_64(lowercase(sender) + "\0" + lowercase(first recipient), SPLIT_SEED) mod 10000
//! route  = SES if bucket < ses_percent × 100, else legacy
//! ```
//!
//! so the choice is deterministic (a retry takes the same route), uniform,
//! precise to 0.01 %, and monotonic: raising the percentage only moves legacy
//! traffic to SES.

use std::fmt;
use std::net::IpAddr;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, RwLock};

use ipnet::IpNet;
use serde::{Deserialize, Serialize};

use crate::net::canonical_ip;

/// Seed of the split hash. Changing it reshuffles which transactions go where: never do it mid-migration.
pub const SPLIT_SEED: u64 = 0x6f6f_2e6e_652e_6a70; // "oo.ne.jp"

/// Number of buckets: percentages resolve to 0.01 %.
pub const BUCKETS: u64 = 10_000;

/// Where a transaction is delivered.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Route {
    /// Amazon SES v2 API (or its dry-run outbox).
    Ses,
    /// The legacy relay, proxied over SMTP.
    Legacy,
}

impl Route {
    /// The label used in logs and metrics.
    pub fn as_str(self) -> &'static str {
        match self {
            Route::Ses => "ses",
            Route::Legacy => "legacy",
        }
    }
}

impl fmt::Display for Route {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The split bucket of a transaction, 0..10000.
pub fn bucket(sender: &str, first_recipient: &str) -> u32 {
    let key = format!(
        "{}\0{}",
        sender.to_lowercase(),
        first_recipient.to_lowercase()
    );
    (xxhash_rust::xxh3::xxh3_64_with_seed(key.as_bytes(), SPLIT_SEED) % BUCKETS) as u32
}

/// Why a value is not an SES percentage the router can apply.
#[derive(Debug, Clone, Copy, PartialEq, thiserror::Error)]
pub enum PercentError {
    /// Not a finite number.
    #[error("ses_percent must be a number from 0 to 100, got {0}")]
    OutOfRange(f64),
    /// Below zero, or zero written with a minus sign (`-0.0`): a sign that
    /// whatever wrote it computed the value rather than meant it.
    #[error("ses_percent {0} is negative: the SES percentage is 0 to 100 (0 = all legacy)")]
    Negative(f64),
    /// Above 100.
    #[error("ses_percent {0} is above 100: the SES percentage is 0 to 100 (100 = all SES)")]
    Above100(f64),
    /// Finer than the router's 0.01 % buckets: refused rather than rounded, so
    /// the value set is the value every place shows and routes.
    #[error("ses_percent {0} has more than two decimals: the split resolves 0.01 % (e.g. 12.34)")]
    TooPrecise(f64),
}

/// An SES share the router can apply: 0 to 100 in steps of 0.01, kept as
/// hundredths so that what is shown is exactly what routes.
///
/// Every source of a value (config, `PUT /cutover`, the CLI, the SSM
/// parameter, the state file) goes through [`Percent::new`]: a finite number
/// from 0 to 100 with at most two decimals. A value is exact when
/// `round(v × 100) / 100 == v` in binary floating point, which is how `12.34`
/// parses; `12.3400000001`, `99.999999999` and `1e-320` are not, and are
/// refused rather than rounded. An integer `-0` (JSON, TOML) arrives as 0;
/// a float `-0.0` is refused as negative.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Percent(u16);

impl Percent {
    /// All traffic to legacy.
    pub const ZERO: Percent = Percent(0);
    /// All traffic to SES.
    pub const ALL: Percent = Percent(BUCKETS as u16);

    /// Validates a percentage (the one check every source goes through).
    pub fn new(ses_percent: f64) -> Result<Percent, PercentError> {
        if !ses_percent.is_finite() {
            return Err(PercentError::OutOfRange(ses_percent));
        }
        if ses_percent.is_sign_negative() {
            return Err(PercentError::Negative(ses_percent));
        }
        if ses_percent > 100.0 {
            return Err(PercentError::Above100(ses_percent));
        }
        let hundredths = (ses_percent * 100.0).round();
        if hundredths / 100.0 != ses_percent {
            return Err(PercentError::TooPrecise(ses_percent));
        }
        Ok(Percent(hundredths as u16))
    }

    /// From hundredths of a percent, clamped to 100 %.
    pub fn from_hundredths(hundredths: u16) -> Percent {
        Percent(hundredths.min(BUCKETS as u16))
    }

    /// Hundredths of a percent: the bucket threshold.
    pub fn hundredths(self) -> u16 {
        self.0
    }

    /// As a number, e.g. `12.34`.
    pub fn as_f64(self) -> f64 {
        f64::from(self.0) / 100.0
    }
}

impl fmt::Display for Percent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.as_f64())
    }
}

impl Serialize for Percent {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_f64(self.as_f64())
    }
}

impl<'de> Deserialize<'de> for Percent {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Percent, D::Error> {
        let value = f64::deserialize(deserializer)?;
        Percent::new(value).map_err(serde::de::Error::custom)
    }
}

/// Checks a percentage before it is applied: [`Percent::new`], for callers
/// that only need the verdict.
pub fn check_percent(ses_percent: f64) -> Result<(), PercentError> {
    Percent::new(ses_percent).map(|_| ())
}

/// The SES share in force, as the cutover publishes it and the router reads
/// it: one value with one writer (the cutover, through [`ShareWriter`]).
#[derive(Debug, Clone)]
pub struct Share(Arc<AtomicU32>);

impl Share {
    /// A share nobody changes (tests, benches).
    pub fn fixed(percent: Percent) -> Share {
        Share(Arc::new(AtomicU32::new(u32::from(percent.hundredths()))))
    }

    /// The share in force now.
    pub fn get(&self) -> Percent {
        let hundredths = self.0.load(Ordering::Acquire);
        Percent::from_hundredths(u16::try_from(hundredths).unwrap_or(u16::MAX))
    }
}

/// The write side of a [`Share`]: held by the cutover alone.
#[derive(Debug)]
pub struct ShareWriter(Share);

impl ShareWriter {
    /// A share starting at `percent`.
    pub fn new(percent: Percent) -> ShareWriter {
        ShareWriter(Share::fixed(percent))
    }

    /// A reader of this share, for the router.
    pub fn reader(&self) -> Share {
        self.0.clone()
    }

    /// Puts `percent` in force for the next transactions.
    pub fn publish(&self, percent: Percent) {
        (self.0)
            .0
            .store(u32::from(percent.hundredths()), Ordering::Release);
    }
}

/// A rule of the relay itself, applied before the configured ones whenever a
/// legacy route exists, and shown by `GET /cutover`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct BuiltInRule {
    /// Short name.
    pub name: &'static str,
    /// What it matches, for people.
    pub matches: &'static str,
    /// Where it sends what it matches.
    pub route: Route,
}

/// SES does not deliver SMTPUTF8 (non-ASCII) addresses, so such a transaction
/// goes where it can be delivered.
pub const INTERNATIONALIZED: BuiltInRule = BuiltInRule {
    name: "internationalized-addresses",
    matches: "the sender or the first recipient is not ASCII (SMTPUTF8); SES does not deliver such addresses",
    route: Route::Legacy,
};

/// Every built-in rule, in the order applied.
pub const BUILT_IN_RULES: &[BuiltInRule] = &[INTERNATIONALIZED];

/// An override: matches when any of its lists matches.
#[derive(Debug, Clone)]
pub struct Rule {
    clients: Vec<IpNet>,
    sender_domains: Vec<String>,
    recipient_domains: Vec<String>,
    route: Route,
}

impl Rule {
    /// A rule (from `[[cutover.rules]]`: `config::RuleConfig::rule`); domains
    /// match in any case, with or without a trailing dot.
    pub fn new(
        clients: Vec<IpNet>,
        sender_domains: &[String],
        recipient_domains: &[String],
        route: Route,
    ) -> Rule {
        let lower = |d: &[String]| {
            d.iter()
                .map(|d| d.trim_end_matches('.').to_ascii_lowercase())
                .collect()
        };
        Rule {
            clients,
            sender_domains: lower(sender_domains),
            recipient_domains: lower(recipient_domains),
            route,
        }
    }

    fn matches(&self, client: IpAddr, sender: &str, first_recipient: &str) -> bool {
        let client = canonical_ip(client);
        self.clients.iter().any(|net| net.contains(&client))
            || in_domains(&self.sender_domains, sender)
            || in_domains(&self.recipient_domains, first_recipient)
    }
}

/// Whether the address's domain is one of `domains` or below one.
fn in_domains(domains: &[String], address: &str) -> bool {
    let Some((_, domain)) = address.rsplit_once('@') else {
        return false;
    };
    let domain = domain.to_ascii_lowercase();
    domains.iter().any(|d| {
        domain == *d
            || domain
                .strip_suffix(d.as_str())
                .is_some_and(|head| head.ends_with('.'))
    })
}

/// Picks the route per transaction: the policy only (rules, the SES share,
/// whether a legacy route exists); the upstreams are `forward::Upstreams`.
/// The share is the cutover's, read at each choice: the router keeps no copy.
pub struct Router {
    has_legacy: bool,
    rules: RwLock<Arc<[Rule]>>,
    share: Share,
}

impl Router {
    /// A router reading `share` (the cutover's); without a legacy route every
    /// transaction takes SES.
    pub fn new(has_legacy: bool, rules: Vec<Rule>, share: Share) -> Router {
        Router {
            has_legacy,
            rules: RwLock::new(rules.into()),
            share,
        }
    }

    /// The route for a transaction, from what is known at its first RCPT.
    pub fn choose(&self, client: IpAddr, sender: &str, first_recipient: &str) -> Route {
        if !self.has_legacy {
            return Route::Ses;
        }
        if !sender.is_ascii() || !first_recipient.is_ascii() {
            return INTERNATIONALIZED.route;
        }
        let rules = self.rules.read().unwrap_or_else(|p| p.into_inner()).clone();
        if let Some(rule) = rules
            .iter()
            .find(|r| r.matches(client, sender, first_recipient))
        {
            return rule.route;
        }
        if bucket(sender, first_recipient) < u32::from(self.share.get().hundredths()) {
            Route::Ses
        } else {
            Route::Legacy
        }
    }

    /// The SES share now applied to new transactions.
    pub fn ses_percent(&self) -> f64 {
        self.share.get().as_f64()
    }

    /// Replaces the rules (SIGHUP reload).
    pub fn set_rules(&self, rules: Vec<Rule>) {
        *self.rules.write().unwrap_or_else(|p| p.into_inner()) = rules.into();
    }

    /// Whether a legacy route exists.
    pub fn has_legacy(&self) -> bool {
        self.has_legacy
    }
}

#[cfg(test)]
mod tests;

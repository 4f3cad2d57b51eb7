//! DNS TXT lookups for the DKIM record checks, behind a small trait so
//! preflight and the periodic check can be tested without the internet, and
//! the check itself: the record published at a key's name carries its public
//! key ([`check_dkim_record`], used by `ses-relay preflight` and by the
//! relay's periodic check alike).

use std::collections::HashMap;

use mail_auth::hickory_resolver::net::NetError;

use crate::message::forward::BoxFuture;
use crate::message::prepare::dkim::{DomainKey, RecordMismatch};

/// Why a TXT lookup gave no records. The texts are short sentences: the
/// callers name the record already.
#[derive(Debug, thiserror::Error)]
pub enum LookupError {
    /// The system's resolver configuration cannot be read.
    #[error(transparent)]
    System(NetError),
    /// The name has no TXT record.
    #[error("no TXT record (NXDOMAIN or empty)")]
    NoRecord,
    /// The resolver did not answer in time.
    #[error("DNS lookup timed out")]
    TimedOut,
    /// Any other resolver failure, its message shortened.
    #[error("DNS lookup failed: {0}")]
    Failed(String),
    /// A [`StaticResolver`] has no answer for the name.
    #[error("{0}: no such record (NXDOMAIN)")]
    NotInTable(String),
}

/// Looks up TXT records; each record's strings are joined.
pub trait TxtResolver: Send + Sync {
    /// The TXT records at `name`.
    fn txt<'a>(&'a self, name: &'a str) -> BoxFuture<'a, Result<Vec<String>, LookupError>>;
}

/// Why a key's published record does not vouch for it.
#[derive(Debug, thiserror::Error)]
pub enum RecordError {
    /// The lookup failed.
    #[error(transparent)]
    Lookup(#[from] LookupError),
    /// TXT records exist, none with a `p=` tag.
    #[error("no DKIM record published")]
    NotPublished,
    /// Every DKIM record found, and why each does not match (`; `-joined).
    #[error("{}", join(.0))]
    Mismatch(Vec<RecordMismatch>),
}

fn join(reasons: &[RecordMismatch]) -> String {
    reasons
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join("; ")
}

/// Checks that the TXT record at the key's name carries its public key.
pub async fn check_dkim_record(
    key: &DomainKey,
    resolver: &dyn TxtResolver,
) -> Result<(), RecordError> {
    let records = resolver.txt(&key.record_name()).await?;
    let dkim: Vec<&String> = records.iter().filter(|r| r.contains("p=")).collect();
    if dkim.is_empty() {
        return Err(RecordError::NotPublished);
    }
    let mut reasons = Vec::new();
    for record in dkim {
        match key.check_record(record) {
            Ok(()) => return Ok(()),
            Err(reason) => reasons.push(reason),
        }
    }
    Err(RecordError::Mismatch(reasons))
}

/// The system's resolver (`/etc/resolv.conf`), through hickory.
pub struct SystemResolver(mail_auth::hickory_resolver::TokioResolver);

impl SystemResolver {
    /// Reads the system configuration.
    pub fn new() -> Result<SystemResolver, LookupError> {
        mail_auth::hickory_resolver::TokioResolver::builder_tokio()
            .and_then(|b| b.build())
            .map(SystemResolver)
            .map_err(LookupError::System)
    }
}

impl SystemResolver {
    /// The resolver `[dkim] resolver` names (UDP, then TCP for long answers),
    /// or the system's when it is empty. Answers are not cached: each check
    /// must ask again, or consecutive confirmations would repeat one answer.
    pub fn configured(config: &crate::config::DkimConfig) -> Result<SystemResolver, LookupError> {
        use mail_auth::hickory_resolver::TokioResolver;
        use mail_auth::hickory_resolver::config::{
            ConnectionConfig, NameServerConfig, ResolverConfig,
        };
        use mail_auth::hickory_resolver::net::runtime::TokioRuntimeProvider;
        let address = config
            .resolver_addr()
            .map_err(|err| LookupError::Failed(err.to_string()))?;
        let mut builder = match address {
            None => TokioResolver::builder_tokio().map_err(LookupError::System)?,
            Some(address) => {
                let connections = [ConnectionConfig::udp(), ConnectionConfig::tcp()]
                    .into_iter()
                    .map(|mut connection| {
                        connection.port = address.port();
                        connection
                    })
                    .collect();
                let server = NameServerConfig::new(address.ip(), true, connections);
                TokioResolver::builder_with_config(
                    ResolverConfig::from_name_servers(vec![server]),
                    TokioRuntimeProvider::default(),
                )
            }
        };
        let options = builder.options_mut();
        options.cache_size = 0;
        options.positive_max_ttl = Some(std::time::Duration::ZERO);
        options.negative_max_ttl = Some(std::time::Duration::ZERO);
        builder
            .build()
            .map(SystemResolver)
            .map_err(LookupError::System)
    }
}

impl TxtResolver for SystemResolver {
    fn txt<'a>(&'a self, name: &'a str) -> BoxFuture<'a, Result<Vec<String>, LookupError>> {
        Box::pin(async move {
            use mail_auth::hickory_resolver::proto::rr::RData;
            let lookup = self
                .0
                .txt_lookup(name)
                .await
                .map_err(|err| lookup_error(&err.to_string()))?;
            Ok(lookup
                .answers()
                .iter()
                .filter_map(|record| match &record.data {
                    RData::TXT(txt) => Some(
                        txt.txt_data
                            .iter()
                            .map(|part| String::from_utf8_lossy(part))
                            .collect::<String>(),
                    ),
                    _ => None,
                })
                .collect())
        })
    }
}

/// hickory's message in a short sentence: it quotes the whole query
/// (`no records found for Query { name: Name(…), query_type: TXT, … }`).
/// The callers name the record already.
fn lookup_error(message: &str) -> LookupError {
    let lower = message.to_ascii_lowercase();
    if lower.contains("no records found") || lower.contains("nxdomain") {
        LookupError::NoRecord
    } else if lower.contains("timed out") || lower.contains("timeout") {
        LookupError::TimedOut
    } else {
        LookupError::Failed(crate::tools::aws_summary::shorten(message, 100))
    }
}

/// Fixed answers (tests, and dry runs before the record is published).
#[derive(Debug, Default, Clone)]
pub struct StaticResolver(pub HashMap<String, Vec<String>>);

impl TxtResolver for StaticResolver {
    fn txt<'a>(&'a self, name: &'a str) -> BoxFuture<'a, Result<Vec<String>, LookupError>> {
        let key = name.trim_end_matches('.').to_ascii_lowercase();
        let answer = self
            .0
            .get(&key)
            .cloned()
            .ok_or_else(|| LookupError::NotInTable(name.to_string()));
        Box::pin(async move { answer })
    }
}

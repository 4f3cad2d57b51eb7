//! DNS TXT lookups for the DKIM record checks, behind a small trait so
//! preflight and the periodic check can be tested without the internet.

use std::collections::HashMap;

use crate::forward::BoxFuture;

/// Looks up TXT records; each record's strings are joined.
pub trait TxtResolver: Send + Sync {
    /// The TXT records at `name`.
    fn txt<'a>(&'a self, name: &'a str) -> BoxFuture<'a, Result<Vec<String>, String>>;
}

/// The system's resolver (`/etc/resolv.conf`), through hickory.
pub struct SystemResolver(mail_auth::hickory_resolver::TokioResolver);

impl SystemResolver {
    /// Reads the system configuration.
    pub fn new() -> Result<SystemResolver, String> {
        mail_auth::hickory_resolver::TokioResolver::builder_tokio()
            .and_then(|b| b.build())
            .map(SystemResolver)
            .map_err(|err| err.to_string())
    }
}

impl TxtResolver for SystemResolver {
    fn txt<'a>(&'a self, name: &'a str) -> BoxFuture<'a, Result<Vec<String>, String>> {
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
fn lookup_error(message: &str) -> String {
    let lower = message.to_ascii_lowercase();
    if lower.contains("no records found") || lower.contains("nxdomain") {
        "no TXT record (NXDOMAIN or empty)".to_string()
    } else if lower.contains("timed out") || lower.contains("timeout") {
        "DNS lookup timed out".to_string()
    } else {
        format!(
            "DNS lookup failed: {}",
            crate::aws_error::shorten(message, 100)
        )
    }
}

/// Fixed answers (tests, and dry runs before the record is published).
#[derive(Debug, Default, Clone)]
pub struct StaticResolver(pub HashMap<String, Vec<String>>);

impl TxtResolver for StaticResolver {
    fn txt<'a>(&'a self, name: &'a str) -> BoxFuture<'a, Result<Vec<String>, String>> {
        let key = name.trim_end_matches('.').to_ascii_lowercase();
        let answer = self
            .0
            .get(&key)
            .cloned()
            .ok_or_else(|| format!("{name}: no such record (NXDOMAIN)"));
        Box::pin(async move { answer })
    }
}

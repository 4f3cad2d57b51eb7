//! The DKIM part of `preflight`: each key loads and signs, each key's
//! record, and each domain's rotation set: which key the relay would sign
//! with now (the newest whose record matches, as at its startup), which
//! newer keys wait for their record, and how each record stands.

use super::{Finding, Level, finding};
use crate::config::{Config, DkimConfig};
use crate::message::prepare::dkim::DkimKeys;
use crate::tools::dns::{RecordError, TxtResolver, check_dkim_record};

/// One configured key as preflight found it.
struct Checked {
    selector: String,
    /// `None`: not looked up (dev) or the key did not load.
    record: Option<Result<(), RecordError>>,
    loaded: bool,
}

/// Every DKIM finding, keys grouped by domain in config order.
pub(super) async fn checks(config: &Config, resolver: &dyn TxtResolver, out: &mut Vec<Finding>) {
    for domain in &signing_domains(config) {
        let mut set = Vec::new();
        for (i, entry) in config.dkim.keys.iter().enumerate() {
            if entry.domain.eq_ignore_ascii_case(domain) {
                set.push(check_key(config, i, resolver, out).await);
            }
        }
        // As the relay starts: the newest key whose record matches, else the first that loads.
        let published = set.iter().rposition(|k| matches!(k.record, Some(Ok(()))));
        let signer = published.or_else(|| set.iter().position(|k| k.loaded));
        for (position, key) in set.iter().enumerate() {
            if let Some(record) = &key.record {
                out.push(record_finding(domain, key, record, position, signer));
            }
        }
        out.push(rotation_finding(
            &config.dkim,
            domain,
            &set,
            signer,
            published.is_some(),
        ));
    }
    if config.dkim.keys.is_empty() {
        out.push(finding(
            Level::Warn,
            "dkim",
            "no keys configured: messages go out unsigned by us",
        ));
    }
}

/// The domains of the keys, lowercased, each once, in config order (a
/// rotation set has several keys, its domain one identity).
pub(super) fn signing_domains(config: &Config) -> Vec<String> {
    let mut domains: Vec<String> = Vec::new();
    for key in &config.dkim.keys {
        let domain = key.domain.to_ascii_lowercase();
        if !domains.contains(&domain) {
            domains.push(domain);
        }
    }
    domains
}

/// Loads the `i`-th key alone (one bad key hides no other) and looks up its record.
async fn check_key(
    config: &Config,
    i: usize,
    resolver: &dyn TxtResolver,
    out: &mut Vec<Finding>,
) -> Checked {
    let entry = &config.dkim.keys[i];
    let single = DkimConfig {
        keys: vec![entry.clone()],
        ..config.dkim.clone()
    };
    let check = format!("dkim key {}._domainkey.{}", entry.selector, entry.domain);
    let mut checked = Checked {
        selector: entry.selector.clone(),
        record: None,
        loaded: false,
    };
    match DkimKeys::load(&single) {
        Ok(keys) => {
            out.push(finding(
                Level::Pass,
                &check,
                format!("{} loads and signs", entry.private_key.display()),
            ));
            checked.loaded = true;
            let key = &keys.keys()[0];
            if config.dev {
                out.push(finding(
                    Level::Pass,
                    format!("dkim dns {}", key.record_name()),
                    "demo key of --dev: never published, not looked up",
                ));
            } else {
                checked.record = Some(check_dkim_record(key, resolver).await);
            }
        }
        Err(err) => out.push(finding(
            Level::Fail,
            format!("{check} [{i}]"),
            err.to_string(),
        )),
    }
    checked
}

/// A key's record: a mismatch fails for the key that would sign (or when
/// none would); a newer key still waiting and an older one no longer
/// signing only warn, as the rotation expects both.
fn record_finding(
    domain: &str,
    key: &Checked,
    record: &Result<(), RecordError>,
    position: usize,
    signer: Option<usize>,
) -> Finding {
    let check = format!("dkim dns {}._domainkey.{domain}", key.selector);
    let reason = match record {
        Ok(()) => {
            return finding(
                Level::Pass,
                check,
                "published record matches the private key",
            );
        }
        Err(reason) => reason,
    };
    match signer {
        Some(signer) if position > signer => finding(
            Level::Warn,
            check,
            format!("{reason}: newer key, does not sign until its record matches"),
        ),
        Some(signer) if position < signer => finding(
            Level::Warn,
            check,
            format!("{reason}: older key, no longer signs (remove it from the config)"),
        ),
        _ => finding(
            Level::Fail,
            check,
            format!("{reason} (publish: ses-relay dkim dns-record)"),
        ),
    }
}

/// `dkim rotation DOMAIN`: which key signs, which wait, each record in a word.
fn rotation_finding(
    dkim: &DkimConfig,
    domain: &str,
    set: &[Checked],
    signer: Option<usize>,
    published: bool,
) -> Finding {
    let check = format!("dkim rotation {domain}");
    let Some(signer) = signer else {
        return finding(Level::Fail, check, "no key of the domain loads");
    };
    let state = |k: &Checked| match &k.record {
        None => "not looked up",
        Some(Ok(())) => "record matches",
        Some(Err(RecordError::Mismatch(_))) => "record has another key",
        Some(Err(_)) => "no record",
    };
    let pending: Vec<String> = set[signer + 1..]
        .iter()
        .map(|k| format!("{} ({})", k.selector, state(k)))
        .collect();
    let signs = format!(
        "signs with {} ({})",
        set[signer].selector,
        state(&set[signer])
    );
    let waits = if pending.is_empty() {
        "nothing pending".to_string()
    } else {
        format!(
            "pending: {} (signs after {} matching checks)",
            pending.join(", "),
            dkim.publish_confirmations
        )
    };
    let level = if !published && set[signer].record.is_some() {
        Level::Fail
    } else if pending.is_empty() {
        Level::Pass
    } else {
        Level::Warn
    };
    finding(level, check, format!("{signs}; {waits}"))
}

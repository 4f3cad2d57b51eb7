//! DKIM key rotation at run time: the choice of each domain's signing key at
//! startup, one round of the periodic DNS check (which moves a rotation set
//! to its newer key once the record is confirmed, with one audit line), and
//! the key metrics. The state itself lives with the keys
//! ([`crate::message::prepare::rotation`]); this module does the DNS and the telling.

use std::time::Duration;

use crate::message::prepare::dkim::{DkimKeys, KeyError};
use crate::message::prepare::rotation::{StartChoice, Switch};
use crate::tools::dns::{RecordError, TxtResolver, check_dkim_record};

/// Longest wait for one key's record at startup: a dead resolver must not
/// hold the relay's start for the resolver's own retries.
const STARTUP_LOOKUP_TIMEOUT: Duration = Duration::from_secs(10);

/// Picks each domain's signing key before the relay serves: the newest key
/// whose record matches now, else the first key with a warning, or with
/// `require_published` an error. Domains with one key are looked up only
/// when `require_published` asks for it (the periodic check reports them).
/// `resolver` is `None` when the DNS check is off.
pub async fn choose_at_startup(
    keys: &DkimKeys,
    resolver: Option<&dyn TxtResolver>,
    require_published: bool,
) -> Result<(), KeyError> {
    for set in keys.sets() {
        if set.members().len() < 2 && !require_published {
            continue;
        }
        let mut matches = Vec::with_capacity(set.members().len());
        let mut reasons = Vec::new();
        for &index in set.members() {
            let key = &keys.keys()[index];
            let outcome = match resolver {
                Some(resolver) => {
                    match tokio::time::timeout(
                        STARTUP_LOOKUP_TIMEOUT,
                        check_dkim_record(key, resolver),
                    )
                    .await
                    {
                        Ok(outcome) => outcome.map_err(|e| e.to_string()),
                        Err(_) => Err("DNS lookup timed out".to_string()),
                    }
                }
                None => Err("the DNS check is off (dkim.dns-check-interval = 0)".to_string()),
            };
            if let Err(reason) = &outcome {
                reasons.push(format!("{}: {reason}", key.selector));
            }
            matches.push(outcome.is_ok());
        }
        match set.start(&matches) {
            StartChoice::Published(index) => tracing::info!(
                domain = %set.domain,
                selector = %keys.keys()[index].selector,
                "DKIM: signing with the newest key whose DNS record matches"
            ),
            StartChoice::NonePublished(_) if require_published => {
                return Err(KeyError::NotPublished {
                    domain: set.domain.clone(),
                    detail: reasons.join("; "),
                });
            }
            StartChoice::NonePublished(index) => tracing::warn!(
                domain = %set.domain,
                selector = %keys.keys()[index].selector,
                reasons = %reasons.join("; "),
                "DKIM: no key of the domain has a matching DNS record; signing with its first key"
            ),
        }
    }
    publish(keys);
    Ok(())
}

/// One round of the periodic check: every key's record, then each rotation
/// set's count and signing key, the consistency gauge and the key metrics.
/// Returns how long to wait before the next round: `interval`, or the
/// rotation's pace while any set has a newer key waiting.
pub async fn check_round(
    keys: &DkimKeys,
    resolver: &dyn TxtResolver,
    interval: Duration,
) -> Duration {
    let mut outcomes: Vec<bool> = Vec::with_capacity(keys.keys().len());
    for (index, key) in keys.keys().iter().enumerate() {
        let outcome = check_dkim_record(key, resolver).await;
        let pending = keys.sets().iter().any(|s| s.is_pending(index));
        if let Err(reason) = &outcome {
            report_mismatch(&key.record_name(), reason, pending);
        }
        let problem = outcome.as_ref().err().map(ToString::to_string);
        crate::metrics::dkim_dns(&key.domain, &key.selector, problem.as_deref());
        outcomes.push(outcome.is_ok());
    }
    for set in keys.sets() {
        let matches: Vec<bool> = set.members().iter().map(|&i| outcomes[i]).collect();
        if let Some(switch) = set.record(&matches, keys.policy.confirmations) {
            audit(keys, &set.domain, &switch);
        }
    }
    publish(keys);
    if keys.sets().iter().any(|s| s.pending()) {
        keys.policy.check_interval.min(interval)
    } else {
        interval
    }
}

/// A key the relay may sign with whose record does not match is a warning;
/// a newer key that waits for its record is the normal course of a rotation.
fn report_mismatch(record: &str, reason: &RecordError, pending: bool) {
    if pending {
        tracing::info!(%record, %reason, "DKIM: the newer key's DNS record does not match yet; the older key signs");
    } else {
        tracing::warn!(%record, %reason, "DKIM DNS record does not match the key");
    }
}

/// The one audit line of a switch: domain, old selector, new selector, confirmations.
fn audit(keys: &DkimKeys, domain: &str, switch: &Switch) {
    tracing::info!(
        audit = "dkim",
        domain = %domain,
        old_selector = %keys.keys()[switch.from].selector,
        new_selector = %keys.keys()[switch.to].selector,
        confirmations = switch.confirmations,
        "DKIM: the newer key's record is confirmed; it signs from the next transaction"
    );
}

/// Sets the key metrics: which key signs, each key's age, count and whether it waits.
pub fn publish(keys: &DkimKeys) {
    crate::metrics::dkim_key_notice_age(keys.policy.notice_age.as_secs_f64());
    for set in keys.sets() {
        let active = set.active();
        for &index in set.members() {
            let key = &keys.keys()[index];
            crate::metrics::dkim_key(
                &key.domain,
                &key.selector,
                crate::metrics::DkimKeyState {
                    active: index == active,
                    pending: set.is_pending(index),
                    age: key.age().as_secs_f64(),
                    confirmations: set.confirmations(index),
                },
            );
        }
    }
}

#[cfg(test)]
mod tests;

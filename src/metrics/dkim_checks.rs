//! The last DNS check of each DKIM key, for the status page: whether the
//! record matched, when, and why not. The gauge
//! `ses_relay_dkim_dns_consistent` says the same as a number; this keeps the
//! time and the reason a person needs. One entry per configured key name
//! (`domain`, `selector`), so it is as bounded as the configuration.

use std::collections::HashMap;
use std::sync::{Mutex, OnceLock};
use std::time::SystemTime;

use super::window::cut;
use crate::log::escape_controls;

/// Longest reason kept, in bytes (a mismatch lists each record found).
const MAX_PROBLEM: usize = 300;

/// One key's last DNS check.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DnsCheck {
    /// When the check ended.
    pub at: SystemTime,
    /// Why the record does not match the key; None when it does.
    pub problem: Option<String>,
}

type Checks = Mutex<HashMap<(String, String), DnsCheck>>;

fn checks() -> &'static Checks {
    static CHECKS: OnceLock<Checks> = OnceLock::new();
    CHECKS.get_or_init(Checks::default)
}

/// Keeps the outcome of the check of `selector._domainkey.domain` made now.
pub(super) fn record(domain: &str, selector: &str, problem: Option<&str>) {
    let problem = problem.map(|p| cut(&escape_controls(p), MAX_PROBLEM).to_string());
    let check = DnsCheck {
        at: SystemTime::now(),
        problem,
    };
    checks()
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .insert((domain.to_string(), selector.to_string()), check);
}

/// The last DNS check of one key; None when it was never checked (the
/// periodic check is off, or has not run yet).
pub fn dkim_dns_check(domain: &str, selector: &str) -> Option<DnsCheck> {
    checks()
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .get(&(domain.to_string(), selector.to_string()))
        .cloned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_last_check_of_each_key_is_kept_bounded() {
        assert_eq!(dkim_dns_check("checks.test", "s1"), None);
        record("checks.test", "s1", None);
        record(
            "checks.test",
            "s2",
            Some(&format!("p= differs\n{}", "x".repeat(1000))),
        );
        assert_eq!(dkim_dns_check("checks.test", "s1").unwrap().problem, None);
        let s2 = dkim_dns_check("checks.test", "s2")
            .unwrap()
            .problem
            .unwrap();
        assert!(s2.starts_with("p= differs\\n"), "{s2}");
        assert_eq!(s2.len(), MAX_PROBLEM);
        // A later check replaces the earlier one.
        record("checks.test", "s1", Some("no DKIM record published"));
        let s1 = dkim_dns_check("checks.test", "s1").unwrap();
        assert_eq!(s1.problem.as_deref(), Some("no DKIM record published"));
    }
}

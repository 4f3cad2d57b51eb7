//! The status page's DKIM section: each configured key with its part in
//! its domain's rotation (signing, waiting for its record, older), its age,
//! and its DNS record as the periodic check last saw it.

use std::time::Duration;

use super::{escape, metric, series, table, td, time};
use crate::control::admin::AdminState;
use crate::metrics;

/// `12 d`, `5 h`, `40 min`: whole units, the largest that fits.
fn age(value: Duration) -> String {
    let secs = value.as_secs();
    match secs {
        0..3600 => format!("{} min", secs / 60),
        3600..86_400 => format!("{} h", secs / 3600),
        _ => format!("{} d", secs / 86_400),
    }
}

/// One row per key, domain by domain, oldest key first.
pub(super) fn keys(state: &AdminState) -> String {
    let live = state.reloadable.current();
    let keys = live.preparer.dkim();
    let mut rows = String::new();
    for set in keys.sets() {
        for &index in set.members() {
            let key = &keys.keys()[index];
            let labels = [
                ("domain", key.domain.as_str()),
                ("selector", key.selector.as_str()),
            ];
            let active = index == set.active();
            let (state, class) = if active {
                let due = key.age() >= keys.policy.notice_age;
                if due {
                    ("signing · rotation due", " class=\"bad\"")
                } else {
                    ("signing", "")
                }
            } else if set.is_pending(index) {
                ("newer: waits for its DNS record", "")
            } else {
                ("older: does not sign", "")
            };
            let state_hook = format!(
                "{} data-value=\"{}\"",
                metric(&series(metrics::DKIM_KEY_ACTIVE, &labels)),
                u8::from(active)
            );
            let check = metrics::dkim_dns_check(&key.domain, &key.selector);
            let (dns, checked) = match &check {
                None => (td("DNS", "", "unchecked"), td("checked (UTC)", "", "never")),
                Some(check) => {
                    let hook = format!(
                        "{} data-value=\"{}\"",
                        metric(&series(metrics::DKIM_DNS_CONSISTENT, &labels)),
                        u8::from(check.problem.is_none())
                    );
                    let text = match &check.problem {
                        None => "<span class=\"good\">consistent</span>".to_string(),
                        Some(problem) => format!(
                            "<span class=\"bad\">not consistent</span>: {}",
                            escape(problem)
                        ),
                    };
                    (
                        td("DNS", &format!("{hook} class=\"text\""), text),
                        td("checked (UTC)", "", time(check.at)),
                    )
                }
            };
            rows.push_str(&format!(
                "<tr data-domain=\"{domain}\" data-selector=\"{selector}\">{}{}{}{}{}{}{}</tr>\n",
                td("domain", "", escape(&key.domain)),
                td("selector", "", escape(&key.selector)),
                td("state", &state_hook, format!("<span{class}>{state}</span>")),
                td("age", "", age(key.age())),
                dns,
                checked,
                td(
                    "confirmations",
                    &metric(&series(metrics::DKIM_KEY_CONFIRMATIONS, &labels)),
                    set.confirmations(index)
                ),
                domain = escape(&key.domain),
                selector = escape(&key.selector),
            ));
        }
    }
    if rows.is_empty() {
        return "<p id=\"dkim-none\">no key configured: the relay does not sign</p>".into();
    }
    format!(
        "{}\n<p>DNS: whether <code>selector._domainkey.domain</code> carries the key's public key at the last periodic check \
         (<code>dkim.dns-check-interval</code>; unchecked while it is off or has not run).</p>",
        table(
            "dkim-table",
            &[
                "domain",
                "selector",
                "state",
                "age",
                "DNS",
                "checked (UTC)",
                "confirmations"
            ],
            &rows
        )
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ages_read_in_whole_units() {
        assert_eq!(age(Duration::from_secs(40 * 60)), "40 min");
        assert_eq!(age(Duration::from_secs(5 * 3600 + 10)), "5 h");
        assert_eq!(age(Duration::from_secs(12 * 86_400)), "12 d");
    }
}

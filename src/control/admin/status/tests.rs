//! The status page without a browser: everything an outsider wrote is
//! escaped, the hooks name series exactly as `/metrics` writes them, the
//! rules are numbered once, and the runbook links land on real sections.
//!
//! The window and the list are process-wide and other tests finish
//! transactions too: assertions look for this test's own entries.

use std::sync::Arc;
use std::time::Duration;

use super::{RUNBOOK, escape, page, series};
use crate::config::{DkimConfig, DkimKeyConfig, RuleConfig, SmtpConfig};
use crate::connection::smtp::Reply;
use crate::control::admin::AdminState;
use crate::control::cutover::{Change, Source};
use crate::daemon::state::Reloadable;
use crate::log::Masker;
use crate::message::disposition::Disposition;
use crate::message::prepare::Preparer;
use crate::message::prepare::dkim::DkimKeys;
use crate::message::route::{Percent, Route};
use crate::metrics;

const HOSTILE: &str = "<script>alert(1)</script>\"'&";

/// A relay's admin side with both routes, one DKIM key of its own and a rule.
fn state(selector: &str) -> Arc<AdminState> {
    let dkim = DkimConfig {
        keys: vec![DkimKeyConfig {
            domain: "status-page.test".into(),
            selector: selector.into(),
            private_key: concat!(env!("CARGO_MANIFEST_DIR"), "/etc/dev/dkim-demo.pem").into(),
            created: None,
        }],
        ..DkimConfig::default()
    };
    let rule: RuleConfig =
        toml::from_str("recipient-domains = [\"legacy.example\"]\nroute = \"legacy\"").unwrap();
    let live = Reloadable {
        smtp: SmtpConfig::default(),
        tls: None,
        preparer: Preparer::new("relay.test", DkimKeys::load(&dkim).unwrap(), "set", false),
        rules: vec![rule.clone(), rule],
        admin_token: None,
        admin_read_token: None,
    };
    AdminState::for_tests(live, 100.0)
}

/// Finishes one transaction the way the session does.
fn fail(
    masker: Masker,
    id: &str,
    route: Route,
    reply: &Reply,
    code: Option<&str>,
    from: &str,
    to: &str,
) {
    let rcpt_to = [to.to_string()];
    metrics::finished(&metrics::Finished {
        id,
        route,
        disposition: Disposition::of_code(reply.code),
        reply,
        upstream_code: code,
        upstream_time: Some(Duration::from_millis(12)),
        from,
        rcpt_to: &rcpt_to,
        masker,
    });
}

/// What a page must never hold: markup an outsider wrote, unescaped.
fn assert_inert(page: &str) {
    for raw in ["<script", "<img", "alert(1)</"] {
        assert!(!page.contains(raw), "{raw} unescaped in:\n{page}");
    }
}

#[tokio::test]
async fn every_field_an_outsider_wrote_is_escaped() {
    let state = state(&format!("sel{HOSTILE}"));
    let unmasked = Masker::new(false);
    // An upstream's reply, SES's code, the addresses (unmasked here), the id.
    let reply = Reply::dynamic(554, [5, 7, 1], format!("Rejected {HOSTILE}"));
    // The window and the error codes are the process's: other tests record
    // theirs at the same time, so this code is made the most frequent one.
    for _ in 0..100 {
        fail(
            unmasked,
            &format!("id{HOSTILE}"),
            Route::Ses,
            &reply,
            Some("<img src=x onerror=alert(1)>"),
            &format!("a{HOSTILE}@goo.ne.jp"),
            &format!("b{HOSTILE}@legacy.example"),
        );
    }
    let legacy = Reply::dynamic(451, [4, 3, 0], format!("Legacy says {HOSTILE}"));
    fail(
        unmasked,
        "T-legacy-escape",
        Route::Legacy,
        &legacy,
        None,
        "c@goo.ne.jp",
        "d@legacy.example",
    );
    // A cutover reason, a DNS check's reason.
    state
        .cutover
        .change(Change {
            percent: Percent::new(100.0).unwrap(),
            reason: format!("night {HOSTILE}"),
            by: Source::Api,
        })
        .await
        .unwrap();
    metrics::dkim_dns(
        "status-page.test",
        &format!("sel{HOSTILE}"),
        Some(&format!("TXT says {HOSTILE}")),
    );
    let page = page(&state);
    assert_inert(&page);
    let escaped = escape(HOSTILE);
    assert_eq!(
        escaped,
        "&lt;script&gt;alert(1)&lt;/script&gt;&quot;&#39;&amp;"
    );
    for shown in [
        format!("Rejected {escaped}"),
        format!("Legacy says {escaped}"),
        format!("id{escaped}"),
        format!("a{escaped}@goo.ne.jp"),
        format!("b{escaped}@legacy.example"),
        format!("night {escaped}"),
        format!("sel{escaped}"),
        format!("TXT says {escaped}"),
        "&lt;img src=x onerror=alert(1)&gt;".to_string(),
    ] {
        assert!(page.contains(&shown), "{shown} not shown escaped:\n{page}");
    }
}

#[test]
fn the_page_shows_what_the_log_shows_masked() {
    let state = state("masked");
    let reply = Reply::dynamic(
        554,
        [5, 7, 1],
        "Address not verified: victim-in-reply@secret.example",
    );
    fail(
        Masker::new(true),
        "T-masked",
        Route::Ses,
        &reply,
        Some("MessageRejected"),
        "sender-masked@secret.example",
        "rcpt-masked@secret.example",
    );
    let page = page(&state);
    assert!(!page.contains("secret.example"), "{page}");
    assert!(!page.contains("victim-in-reply"), "{page}");
    assert!(page.contains("s***@sec***.***"), "{page}");
    assert!(page.contains("r***@sec***.***"), "{page}");
    assert!(page.contains("v***@sec***.***"), "{page}");
}

#[test]
fn rules_are_numbered_once_and_the_page_fits_a_phone() {
    let page = page(&state("rules"));
    let rules = page.split("<ol id=\"rules\">").nth(1).unwrap();
    let rules = rules.split("</ol>").next().unwrap();
    let items: Vec<&str> = rules.matches("<li>").collect();
    assert_eq!(items.len(), 2, "{rules}");
    for item in rules.split("<li>").skip(1) {
        assert!(
            !item.starts_with(|c: char| c.is_ascii_digit()),
            "numbered twice: {item}"
        );
    }
    assert!(
        page.contains("<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">")
    );
    // No fixed widths (sizes in em and %); every cell names its column for
    // the narrow layout.
    for width in super::STYLE.split("width:").skip(1) {
        let value = width.split([';', '}']).next().unwrap();
        assert!(!value.contains("px"), "fixed width {value}");
    }
    let cells = page.matches("<td").count();
    assert!(cells > 10, "{page}");
    assert_eq!(page.matches("<td data-label=\"").count(), cells, "{page}");
    assert!(!page.contains("<script"), "no script");
    let generated = page
        .split("<span id=\"generated\"><time datetime=\"")
        .nth(1)
        .unwrap();
    let generated = &generated[..20];
    assert!(
        humantime::parse_rfc3339(generated).is_ok() && generated.ends_with('Z'),
        "{generated}"
    );
}

#[test]
fn hooks_name_series_as_metrics_writes_them() {
    metrics::install();
    metrics::transaction(Route::Legacy, Disposition::Refused, 1, 0, 0.0, 0.0);
    metrics::ses_error("HookTestCode");
    metrics::dkim_dns("hooks.test", "s\"1", None);
    let text = metrics::render();
    for series in [
        series(
            metrics::TRANSACTIONS,
            &[("route", "legacy"), ("result", "refused")],
        ),
        series(metrics::SES_ERRORS, &[("error", "HookTestCode")]),
        series(
            metrics::DKIM_DNS_CONSISTENT,
            &[("domain", "hooks.test"), ("selector", "s\"1")],
        ),
    ] {
        assert!(
            text.lines().any(|l| l.starts_with(&format!("{series} "))),
            "{series} not in:\n{text}"
        );
    }
}

#[test]
fn runbook_links_land_on_sections_of_the_guide() {
    let page = page(&state("runbook"));
    for (anchor, _) in RUNBOOK {
        assert!(
            crate::control::admin::runbook::has_anchor(anchor),
            "docs/operations.md has no section #{anchor}"
        );
        assert!(page.contains(&format!("href=\"/runbook#{anchor}\"")));
    }
}

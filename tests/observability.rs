//! Metrics, dashboard and alerts fit together: after real traffic through both
//! routes, every metric the Grafana dashboard and the Prometheus rules use is
//! exported by `GET /metrics`, the counters moved, and `GET /` renders.

mod common;

use std::net::SocketAddr;

use common::client::smtp;
use common::metrics::Metrics;
use common::ses_fake::{Mode, SesFake};
use common::smtp_sink::SmtpSink;
use common::{RunningRelay, test_config};
use ses_relay::config::{Config, LegacyConfig, LegacyTls};

/// Metric names (`ses_relay_...`) used in a dashboard or rules file; recording
/// rule names (`route:ses_relay_...:rate5m`) are not metrics we export.
fn metric_names(text: &str) -> Vec<String> {
    let mut names = Vec::new();
    let bytes = text.as_bytes();
    let mut from = 0;
    while let Some(pos) = text[from..].find("ses_relay_") {
        let start = from + pos;
        let before = start.checked_sub(1).map(|i| bytes[i]);
        let end = text[start..]
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .map_or(text.len(), |e| start + e);
        let after = bytes.get(end).copied();
        if !matches!(before, Some(b) if b.is_ascii_alphanumeric() || b == b'_' || b == b':')
            && after != Some(b':')
        {
            names.push(text[start..end].to_string());
        }
        from = end;
    }
    names.sort();
    names.dedup();
    names
}

async fn get(addr: SocketAddr, path: &str) -> String {
    let answer = common::admin::get(addr, path).await;
    assert_eq!(answer.status, 200, "{path}: {}", answer.body);
    answer.body
}

/// One session: `commands` are sent one by one and each reply is read;
/// `message` (when given) follows the DATA command's 354.
fn transaction(to: &str) -> Vec<String> {
    [
        "EHLO client.test",
        "MAIL FROM:<a@goo.ne.jp>",
        &format!("RCPT TO:<{to}>"),
        "DATA",
        "QUIT",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect()
}

const MESSAGE: &str = "From: a@goo.ne.jp\r\nSubject: m\r\n\r\nbody";

/// SES at 100 %, and recipients at legacy.example to the sink by a rule
/// (the percentage gauge is process-wide: every test here keeps it at 100).
fn legacy_by_rule(ses: &SesFake, sink: &SmtpSink) -> Config {
    let mut config = test_config(&ses.endpoint());
    config.legacy = Some(LegacyConfig {
        relay: sink.addr.to_string(),
        tls: LegacyTls::None,
        ..LegacyConfig::default()
    });
    config.cutover.ses_percent = Some(100.0);
    config.cutover.rules = vec![
        toml::from_str("recipient-domains = [\"legacy.example\"]\nroute = \"legacy\"").unwrap(),
    ];
    config
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dashboard_and_rules_metrics_are_exported_and_move() {
    let ses = SesFake::start().await;
    let sink = SmtpSink::start().await;
    let relay = RunningRelay::start(legacy_by_rule(&ses, &sink)).await;
    let admin = relay.admin();
    let before = Metrics::of(&relay).await;

    // replies: greeting, EHLO, MAIL, RCPT, 354, final, QUIT
    for _ in 0..3 {
        let replies = smtp(relay.addr, &transaction("b@example.com"), Some(MESSAGE)).await;
        assert!(replies[5].starts_with("250 2.0.0"), "{replies:?}");
    }
    let replies = smtp(relay.addr, &transaction("b@legacy.example"), Some(MESSAGE)).await;
    assert!(
        replies[5].starts_with("250 2.0.0 Ok: queued as L"),
        "{replies:?}"
    );
    let mut refused = transaction("reject@legacy.example");
    refused.remove(3);
    let replies = smtp(relay.addr, &refused, None).await;
    assert!(replies[3].starts_with("550"), "{replies:?}");
    ses.set_mode(Mode::Reject(
        "MessageRejected",
        "Email address is not verified.",
    ));
    let replies = smtp(relay.addr, &transaction("b@example.com"), Some(MESSAGE)).await;
    assert!(replies[5].starts_with("554"), "{replies:?}");
    // A client's own mistake (bare LF): counted refused, outside the ratio.
    let bare_lf = "From: a@goo.ne.jp\r\nSubject: m\r\n\r\nbare\nLF";
    let replies = smtp(relay.addr, &transaction("b@example.com"), Some(bare_lf)).await;
    assert!(replies[5].starts_with("550 5.5.2"), "{replies:?}");

    let after = Metrics::of(&relay).await;
    let exported = after.text();
    for file in [
        "etc/grafana/ses-relay.json",
        "etc/prometheus/ses-relay.rules.yml",
    ] {
        let text =
            std::fs::read_to_string(std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join(file))
                .unwrap();
        let names = metric_names(&text);
        assert!(names.len() >= 3, "{file}: {names:?}");
        for name in names {
            assert!(
                exported.lines().any(|l| l.starts_with(&name)
                    && matches!(l.as_bytes().get(name.len()), Some(b'{' | b' '))),
                "{file} uses {name}, which /metrics does not export:\n{exported}"
            );
        }
    }
    let moved = |name: &str, labels: &[(&str, &str)]| after.delta(&before, name, labels);
    let transactions = "ses_relay_transactions_total";
    for (route, result, count) in [
        ("ses", "delivered", 3.0),
        ("ses", "rejected", 1.0),
        ("legacy", "delivered", 1.0),
        ("ses", "refused", 1.0),
    ] {
        let labels = [("route", route), ("result", result)];
        assert_eq!(
            moved(transactions, &labels),
            count,
            "{labels:?}\n{exported}"
        );
    }
    assert_eq!(
        moved(
            "ses_relay_ses_errors_total",
            &[("error", "MessageRejected")]
        ),
        1.0
    );
    assert_eq!(
        moved("ses_relay_legacy_errors_total", &[("kind", "reply_5xx")]),
        1.0
    );
    assert_eq!(
        after.value("ses_relay_cutover_ses_percent", &[]),
        Some(100.0)
    );
    assert_eq!(
        after.value(
            "ses_relay_dkim_dns_consistent",
            &[("domain", "goo.ne.jp"), ("selector", "gooid-21-prod")]
        ),
        Some(1.0)
    );
    assert!(
        exported.contains("# HELP ses_relay_transactions_total"),
        "described"
    );
    assert!(
        after
            .value(
                "ses_relay_delivery_duration_seconds_bucket",
                &[("route", "ses"), ("le", "0.005")]
            )
            .is_some(),
        "explicit buckets"
    );

    let page = get(admin, "/").await;
    assert!(page.starts_with("<!doctype html>"));
    assert!(
        page.contains("data-cutover=\"ses_percent\">100</span> % to SES"),
        "{page}"
    );
    assert!(page.contains("legacy.example"), "rules listed: {page}");
    // route, reachability, delivered, deferred, rejected, refused, success
    let ses_row = page.split("<tr data-route=\"ses\">").nth(1).unwrap();
    let cells: Vec<&str> = ses_row
        .split("</tr>")
        .next()
        .unwrap()
        .split("</td>")
        .collect();
    let texts: Vec<&str> = cells
        .iter()
        .map(|c| c.rsplit('>').next().unwrap())
        .collect();
    assert_eq!(
        texts[..7],
        ["ses", "not probed", "3", "0", "1", "1", "75.00 %"],
        "{page}"
    );
    assert!(
        !page.contains("http://") && !page.contains("https://"),
        "no external assets"
    );
    assert!(relay.stop().await);
}

/// Every dashboard panel has a place on Grafana's 24-column grid: whole
/// widths from 1 to 24 that fit the row, and a height that shows a graph.
#[test]
fn every_dashboard_panel_fits_the_grid() {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("etc/grafana/ses-relay.json");
    let dashboard: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    let panels = dashboard["panels"].as_array().expect("panels");
    assert!(!panels.is_empty());
    for panel in panels {
        let grid = &panel["gridPos"];
        let (x, w, h) = (grid["x"].as_u64(), grid["w"].as_u64(), grid["h"].as_u64());
        let title = &panel["title"];
        let (Some(x), Some(w), Some(h)) = (x, w, h) else {
            panic!("{title}: gridPos {grid} is not whole numbers");
        };
        assert!((1..=24).contains(&w) && x + w <= 24, "{title}: {grid}");
        assert!((3..=30).contains(&h), "{title}: {grid}");
    }
}

/// A 4xx the legacy relay gives to the end of DATA is passed back to the
/// client as it is, and the transaction is `deferred` on the legacy route
/// (Postfix keeps the message and retries), not `rejected`.
#[tokio::test]
async fn a_legacy_4xx_at_the_end_of_data_is_passed_back_and_counted_deferred() {
    let ses = SesFake::start().await;
    let sink = SmtpSink::start().await;
    let relay = RunningRelay::start(legacy_by_rule(&ses, &sink)).await;
    let deferred = [("route", "legacy"), ("result", "deferred")];
    let rejected = [("route", "legacy"), ("result", "rejected")];
    let before = Metrics::of(&relay).await;

    let commands: Vec<String> = [
        "EHLO client.test",
        "MAIL FROM:<defer-data@goo.ne.jp>",
        "RCPT TO:<b@legacy.example>",
        "DATA",
        "QUIT",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    // replies: greeting, EHLO, MAIL, RCPT, 354, final, QUIT
    let replies = smtp(relay.addr, &commands, Some(MESSAGE)).await;
    assert!(
        replies[3].starts_with("250 2.1.5"),
        "proxied RCPT: {replies:?}"
    );
    assert!(
        replies[5].starts_with("451 4.3.0 Error: queue file write error"),
        "the legacy relay's own reply: {replies:?}"
    );
    assert!(sink.messages().is_empty());
    assert!(
        ses.requests().is_empty(),
        "a legacy deferral is not sent to SES"
    );

    let after = Metrics::of(&relay).await;
    let transactions = "ses_relay_transactions_total";
    assert_eq!(
        after.delta(&before, transactions, &deferred),
        1.0,
        "{}",
        after.text()
    );
    assert_eq!(
        after.delta(&before, transactions, &rejected),
        0.0,
        "{}",
        after.text()
    );
    assert!(relay.stop().await);
}

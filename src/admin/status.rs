//! `GET /`: a small status page for people (plain HTML, no external assets):
//! version, uptime, the cutover percentage and rules, per-route transactions
//! and success ratio over the last five minutes, sessions in flight.

use crate::metrics;
use crate::server::Relay;

fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// Renders the page.
pub fn page(relay: &Relay) -> String {
    let status = relay.cutover.status();
    let uptime = metrics::uptime_seconds();
    let mut routes = String::new();
    for route in ["ses", "legacy"] {
        if route == "legacy" && !relay.router.has_legacy() {
            continue;
        }
        let t = metrics::recent().totals(route);
        let ratio = t
            .success_ratio()
            .map_or("–".to_string(), |r| format!("{:.2} %", r * 100.0));
        routes.push_str(&format!(
            "<tr><td>{route}</td><td>{}</td><td>{}</td><td>{}</td><td>{ratio}</td></tr>\n",
            t.delivered, t.deferred, t.rejected
        ));
    }
    let rules: String = relay
        .live()
        .rules
        .iter()
        .enumerate()
        .map(|(i, rule)| {
            let mut parts = Vec::new();
            if !rule.clients.is_empty() {
                parts.push(format!(
                    "clients {}",
                    rule.clients
                        .iter()
                        .map(|c| c.to_string())
                        .collect::<Vec<_>>()
                        .join(", ")
                ));
            }
            if !rule.sender_domains.is_empty() {
                parts.push(format!("sender domains {}", rule.sender_domains.join(", ")));
            }
            if !rule.recipient_domains.is_empty() {
                parts.push(format!(
                    "recipient domains {}",
                    rule.recipient_domains.join(", ")
                ));
            }
            format!(
                "<li>{}. {} → <b>{}</b></li>\n",
                i + 1,
                escape(&parts.join("; ")),
                rule.route
            )
        })
        .collect();
    let rules = if rules.is_empty() {
        "<li>none</li>".to_string()
    } else {
        rules
    };
    format!(
        r#"<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>ses-relay</title>
<meta http-equiv="refresh" content="15">
<style>
body {{ font-family: system-ui, sans-serif; margin: 2em; color: #222; }}
table {{ border-collapse: collapse; }} td, th {{ border: 1px solid #ccc; padding: .3em .8em; text-align: right; }}
th:first-child, td:first-child {{ text-align: left; }} .big {{ font-size: 2em; font-weight: bold; }}
</style></head><body>
<h1>ses-relay {version}</h1>
<p>up {hours}h {minutes}m · sessions in flight: <b>{sessions}</b>{shutting}</p>
<h2>Cutover</h2>
<p class="big">{percent} % to SES</p>
<p>source: {source}{change}</p>
<ol>{rules}</ol>
<h2>Last 5 minutes</h2>
<table><tr><th>route</th><th>delivered</th><th>deferred (4xx)</th><th>rejected (5xx)</th><th>success</th></tr>
{routes}</table>
<p><a href="/metrics">/metrics</a> · <a href="/cutover">/cutover</a> · <a href="/readyz">/readyz</a></p>
</body></html>
"#,
        version = env!("CARGO_PKG_VERSION"),
        hours = uptime / 3600,
        minutes = uptime % 3600 / 60,
        sessions = metrics::open_sessions(),
        shutting = if relay.shutdown.is_triggered() {
            " · <b>shutting down</b>"
        } else {
            ""
        },
        percent = status.ses_percent,
        source = match status.source {
            crate::cutover::Source::Config => "config file",
            crate::cutover::Source::StateFile => "state file (set at runtime)",
        },
        change = match (&status.updated_at, &status.reason) {
            (Some(at), Some(reason)) => format!(" · changed {} — {}", escape(at), escape(reason)),
            _ => String::new(),
        },
    )
}

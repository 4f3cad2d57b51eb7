//! `GET /`: the status page for the operator on call, plain HTML with no
//! script and no external asset, readable on a phone (tables turn into
//! labelled blocks on a narrow screen, and a table too wide for its box
//! scrolls inside it, never the page). Top to bottom: the share to SES and
//! why; the rollback guard with its figures; each route's reachability,
//! transactions and upstream latency (p50, p99) over five minutes; the top
//! error codes over five minutes; the last transactions not delivered
//! (addresses masked as the log masks them); each DKIM key's DNS state; the
//! runbook's sections. It says when it was generated (UTC) and reloads itself
//! every 15 seconds.
//!
//! Every figure that `/metrics` or `GET /cutover` also gives carries a
//! machine-readable hook, so a test (or a script) can hold the page to them:
//! `data-metric="<Prometheus series>"` (five-minute counts name the counter
//! whose increase they are), `data-cutover="<field>"` and `data-guard="<field>"`
//! for `GET /cutover`'s fields; `data-value` holds the raw value where the
//! text is worded for people.

mod dkim;
mod traffic;

use std::fmt::Display;
use std::time::SystemTime;

use crate::control::admin::AdminState;
use crate::control::guard::{Snapshot, State, format_duration, format_ratio};
use crate::metrics;

#[cfg(test)]
mod tests;

fn state_name(snapshot: &Snapshot) -> &'static str {
    match (snapshot.state, snapshot.can_move_traffic) {
        (State::Disabled, _) => "disabled",
        (State::Armed, true) => "armed",
        (State::Armed, false) => "armed (alert only: no [legacy] route)",
        (State::Tripped, _) => "tripped",
    }
}

fn state_label(state: State) -> &'static str {
    match state {
        State::Disabled => "disabled",
        State::Armed => "armed",
        State::Tripped => "tripped",
    }
}

/// The guard for `GET /cutover`: state, last trip, the window's figures.
pub fn guard_json(snapshot: &Snapshot) -> serde_json::Value {
    let f = &snapshot.figures;
    serde_json::json!({
        "state": state_label(snapshot.state),
        "can_move_traffic": snapshot.can_move_traffic,
        "last_trip": snapshot.last_trip,
        "window_seconds": snapshot.thresholds.window.as_secs_f64(),
        "outcomes": f.outcomes,
        "failures": f.failures,
        "rejected": f.rejected,
        "reject_clients": f.reject_clients,
        "max_reject_ratio": snapshot.thresholds.max_reject_ratio,
        "min_reject_clients": snapshot.thresholds.min_reject_clients,
        "delay_p95_seconds": f.delay_p95.map(|d| d.as_secs_f64()),
        "sends": f.sends,
        "bounces": f.bounces,
        "complaints": f.complaints,
    })
}

/// Text for HTML, in an element or a double- or single-quoted attribute.
pub(crate) fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// A Prometheus series as `/metrics` writes it: `name{label="value",...}`,
/// labels in the order the relay registers them, values escaped as the
/// exposition format escapes them.
fn series(name: &str, labels: &[(&str, &str)]) -> String {
    if labels.is_empty() {
        return name.to_string();
    }
    let labels: Vec<String> = labels
        .iter()
        .map(|(key, value)| {
            let value = value
                .replace('\\', "\\\\")
                .replace('"', "\\\"")
                .replace('\n', "\\n");
            format!("{key}=\"{value}\"")
        })
        .collect();
    format!("{name}{{{}}}", labels.join(","))
}

/// ` data-metric="<series>"`.
fn metric(series: &str) -> String {
    format!(" data-metric=\"{}\"", escape(series))
}

/// One cell: `label` names its column on a narrow screen, `attrs` are its
/// hooks (already escaped), `html` its content (already escaped).
fn td(label: &str, attrs: &str, html: impl Display) -> String {
    format!("<td data-label=\"{label}\"{attrs}>{html}</td>")
}

/// A table in a box of its own: `rows` are `<tr>…</tr>` built with [`td`].
fn table(id: &str, headings: &[&str], rows: &str) -> String {
    let headings: String = headings.iter().map(|h| format!("<th>{h}</th>")).collect();
    format!(
        "<div class=\"wide\"><table class=\"stack\" id=\"{id}\"><thead><tr>{headings}</tr></thead>\n<tbody>\n{rows}</tbody></table></div>"
    )
}

/// A moment in UTC, ISO 8601 to the second.
fn utc(at: SystemTime) -> String {
    humantime::format_rfc3339_seconds(at).to_string()
}

/// `<time>` for people and machines alike.
fn time(at: SystemTime) -> String {
    let text = utc(at);
    format!("<time datetime=\"{text}\">{text}</time>")
}

fn guard_section(snapshot: &Snapshot) -> String {
    let state = format!(
        "<p class=\"big\" data-guard=\"state\" data-value=\"{}\">{}</p>",
        state_label(snapshot.state),
        state_name(snapshot)
    );
    if snapshot.state == State::Disabled {
        return format!("{state}<p>(<code>[guard] enabled = false</code>)</p>");
    }
    let f = &snapshot.figures;
    let t = &snapshot.thresholds;
    let ratio = |part: u64, whole: u64| {
        if whole == 0 {
            "–".to_string()
        } else {
            format_ratio(part as f64 / whole as f64)
        }
    };
    let count = |field: &str, n: u64| format!("<span data-guard=\"{field}\">{n}</span>");
    let last = match &snapshot.last_trip {
        Some(reason) => format!(
            "last trip: <span data-guard=\"last_trip\">{}</span>",
            escape(reason)
        ),
        None => "no trip".to_string(),
    };
    let row = |condition: &str, now: String, limit: String, counts: String| {
        format!(
            "<tr>{}{}{}{}</tr>\n",
            td("condition", "", condition),
            td("now", "", now),
            td("limit", "", limit),
            td("counts", "", counts)
        )
    };
    let p95 = match f.delay_p95 {
        Some(p95) => format!(
            "<span data-guard=\"delay_p95_seconds\" data-value=\"{}\">{}</span>",
            p95.as_secs_f64(),
            format_duration(p95)
        ),
        None => "–".to_string(),
    };
    let rows = [
        row(
            "failure ratio (SES upstream)",
            ratio(f.failures, f.outcomes),
            format_ratio(t.max_failure_ratio),
            format!(
                "{} of {}",
                count("failures", f.failures),
                count("outcomes", f.outcomes)
            ),
        ),
        row(
            &format!(
                "reject ratio (SES refusals, from {}+ clients)",
                t.min_reject_clients
            ),
            ratio(f.rejected, f.outcomes),
            format_ratio(t.max_reject_ratio),
            format!(
                "{} of {} from {} clients",
                count("rejected", f.rejected),
                f.outcomes,
                count("reject_clients", f.reject_clients)
            ),
        ),
        row(
            "delay p95",
            p95,
            format_duration(t.max_delay),
            format!("{} messages", f.delays),
        ),
        row(
            "bounce ratio",
            ratio(f.bounces, f.sends),
            format_ratio(t.max_bounce_ratio),
            format!(
                "{} of {} sends",
                count("bounces", f.bounces),
                count("sends", f.sends)
            ),
        ),
        row(
            "complaint ratio",
            ratio(f.complaints, f.sends),
            format_ratio(t.max_complaint_ratio),
            format!("{} of {} sends", count("complaints", f.complaints), f.sends),
        ),
    ]
    .concat();
    format!(
        "{state}<p>{last}</p>\n<p>window <span data-guard=\"window_seconds\" data-value=\"{}\">{}</span>, judged from {} transactions</p>\n{}",
        t.window.as_secs_f64(),
        format_duration(t.window),
        t.min_transactions,
        table(
            "guard-conditions",
            &["condition", "now", "limit", "counts"],
            &rows
        )
    )
}

/// The share to SES, where it comes from, why, and the rules before it.
fn cutover_section(state: &AdminState) -> String {
    let status = state.cutover.status();
    let source_label = serde_json::to_value(status.source)
        .ok()
        .and_then(|v| v.as_str().map(str::to_string))
        .unwrap_or_default();
    let source = match (status.source, status.store) {
        (crate::control::cutover::Source::Config, _) => "config file",
        (crate::control::cutover::Source::StateFile, _) => "state file (set at runtime)",
        (crate::control::cutover::Source::Api, _) => "admin API (shared through SSM)",
        (crate::control::cutover::Source::Guard, crate::config::CutoverStore::File) => {
            "rollback guard (state file)"
        }
        (crate::control::cutover::Source::Guard, crate::config::CutoverStore::Ssm) => {
            "rollback guard (shared through SSM)"
        }
    };
    let field = |name: &str, value: &Option<String>| match value {
        Some(value) => format!("<span data-cutover=\"{name}\">{}</span>", escape(value)),
        None => "–".to_string(),
    };
    let why = match (&status.updated_at, &status.reason) {
        (Some(_), Some(_)) => format!(
            "<p>why: <b>{}</b></p>\n<p>changed {}{}{}</p>",
            field("reason", &status.reason),
            field("updated_at", &status.updated_at),
            status
                .updated_by
                .as_ref()
                .map_or(String::new(), |_| format!(" by {}", field("updated_by", &status.updated_by))),
            status
                .change_id
                .as_ref()
                .map_or(String::new(), |_| format!(" (change {})", field("change_id", &status.change_id))),
        ),
        _ => "<p>why: the configured value (<code>cutover.ses-percent</code>); no change at runtime</p>".to_string(),
    };
    let store = match (status.store, status.version) {
        (crate::config::CutoverStore::Ssm, version) => format!(
            "<p>shared through SSM, version {}, last read {}</p>",
            version.map_or("none".to_string(), |v| v.to_string()),
            escape(status.refreshed_at.as_deref().unwrap_or("never"))
        ),
        (crate::config::CutoverStore::File, _) => String::new(),
    };
    let pending = if status.pending_write {
        "<p><b>written here, not yet in SSM</b></p>"
    } else {
        ""
    };
    let rules: String = state
        .reloadable
        .current()
        .rules
        .iter()
        .map(|rule| {
            let mut parts = Vec::new();
            if !rule.clients.is_empty() {
                let clients: Vec<String> = rule.clients.iter().map(|c| c.to_string()).collect();
                parts.push(format!("clients {}", clients.join(", ")));
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
            // The list numbers its items; the text does not number them again.
            format!(
                "<li>{} → <b>{}</b></li>\n",
                escape(&parts.join("; ")),
                rule.route
            )
        })
        .collect();
    let rules = if rules.is_empty() {
        "<p>rules: none</p>".to_string()
    } else {
        format!(
            "<p>rules, applied before the share (first match wins):</p>\n<ol id=\"rules\">\n{rules}</ol>"
        )
    };
    format!(
        "<p class=\"big\"><span{metric} data-cutover=\"ses_percent\">{percent}</span> % to SES</p>\n\
         <p>source: <span data-cutover=\"source\" data-value=\"{source_label}\">{source}</span></p>\n\
         {why}\n{store}{pending}{rules}",
        metric = metric(metrics::CUTOVER_SES_PERCENT),
        percent = status.ses_percent,
    )
}

/// Where the runbook answers what the page shows: `/runbook` (the
/// operations guide this binary was built with) and its section anchors.
const RUNBOOK: [(&str, &str); 7] = [
    ("cutover-runbook", "Cutover runbook"),
    ("after-a-trip", "After a guard trip"),
    ("legacy-outage", "Legacy outage"),
    ("ssm-outage", "SSM outage"),
    ("metrics-and-alerts", "Metrics and alerts"),
    ("dkim-key-rotation", "DKIM key rotation"),
    ("fleet-runbook", "Fleet runbook"),
];

fn runbook_section() -> String {
    let links: String = RUNBOOK
        .iter()
        .map(|(anchor, title)| format!("<li><a href=\"/runbook#{anchor}\">{title}</a></li>\n"))
        .collect();
    format!(
        "<ul id=\"runbook\">\n{links}</ul>\n<p>The operations guide (<code>docs/operations.md</code>) of this build. \
         Raw figures: <a href=\"/metrics\">/metrics</a> · <a href=\"/cutover\">/cutover</a> · <a href=\"/readyz\">/readyz</a></p>"
    )
}

const STYLE: &str = "\
body { font-family: system-ui, sans-serif; margin: 0 auto; padding: .8em; max-width: 80em; color: #222; line-height: 1.4; }
h1 { font-size: 1.4em; margin: .2em 0; } h2 { font-size: 1.15em; margin: 1.4em 0 .4em; border-bottom: 1px solid #ccc; }
p { margin: .3em 0; } .big { font-size: 1.8em; font-weight: bold; }
.wide { overflow-x: auto; max-width: 100%; }
table { border-collapse: collapse; } td, th { border: 1px solid #ccc; padding: .3em .6em; text-align: right; vertical-align: top; }
th, td:first-child, td.text { text-align: left; }
li, p { overflow-wrap: anywhere; } td { overflow-wrap: break-word; } time { white-space: nowrap; }
nav a { margin-right: .6em; white-space: nowrap; }
.bad { color: #a00; font-weight: bold; } .good { color: #060; }
@media (max-width: 40em) {
  table.stack, table.stack tbody, table.stack tr, table.stack td { display: block; }
  table.stack thead { display: none; }
  table.stack tr { border: 1px solid #ccc; margin: 0 0 .6em; }
  table.stack td { border: none; text-align: left; padding: .1em .5em; overflow-wrap: anywhere; }
  table.stack td::before { content: attr(data-label) \": \"; font-weight: bold; }
}
";

/// Renders the page.
pub fn page(state: &AdminState) -> String {
    let uptime = metrics::uptime_seconds();
    format!(
        r##"<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta http-equiv="refresh" content="15">
<link rel="icon" href="data:,">
<title>ses-relay status</title>
<style>
{STYLE}</style></head><body>
<h1>ses-relay {version}</h1>
<p>generated <span id="generated">{generated}</span> · up {hours}h {minutes}m · sessions in flight: <b{sessions_metric}>{sessions}</b>{shutting}</p>
<nav><a href="#cutover">cutover</a> <a href="#guard">guard</a> <a href="#routes">routes</a> <a href="#errors">errors</a> <a href="#not-delivered">not delivered</a> <a href="#dkim">DKIM</a> <a href="#runbook-links">runbook</a></nav>
<h2 id="cutover">Cutover</h2>
{cutover}
<h2 id="guard">Rollback guard</h2>
{guard}
<h2 id="routes">Routes, last 5 minutes</h2>
{routes}
<h2 id="errors">Top error codes, last 5 minutes</h2>
{errors}
<h2 id="not-delivered">Last {kept} not delivered</h2>
{not_delivered}
<h2 id="dkim">DKIM keys</h2>
{dkim}
<h2 id="runbook-links">Runbook</h2>
{runbook}
</body></html>
"##,
        version = crate::daemon::build_info::LONG_VERSION,
        generated = time(SystemTime::now()),
        hours = uptime / 3600,
        minutes = uptime % 3600 / 60,
        sessions_metric = metric(metrics::SMTP_SESSIONS),
        sessions = metrics::open_sessions(),
        shutting = if state.shutdown.is_triggered() {
            " · <b class=\"bad\">shutting down</b>"
        } else {
            ""
        },
        cutover = cutover_section(state),
        guard = guard_section(&state.guard.snapshot()),
        routes = traffic::routes(state),
        errors = traffic::top_errors(),
        kept = metrics::KEPT,
        not_delivered = traffic::not_delivered(),
        dkim = dkim::keys(state),
        runbook = runbook_section(),
    )
}

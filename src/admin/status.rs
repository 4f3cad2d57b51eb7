//! `GET /`: a small status page for people (plain HTML, no external assets):
//! version, uptime, the cutover percentage and rules, per-route transactions
//! and success ratio over the last five minutes (transactions refused for the
//! client's own mistake shown apart, outside the ratio), sessions in flight,
//! and the rollback guard's state with the figures it watches.

use crate::disposition::Disposition;
use crate::guard::{Snapshot, State, format_duration, format_ratio};
use crate::metrics;
use crate::relay::Relay;
use crate::route::Route;

fn state_name(snapshot: &Snapshot) -> &'static str {
    match (snapshot.state, snapshot.can_move_traffic) {
        (State::Disabled, _) => "disabled",
        (State::Armed, true) => "armed",
        (State::Armed, false) => "armed (alert only: no [legacy] route)",
        (State::Tripped, _) => "tripped",
    }
}

/// The guard for `GET /cutover`: state, last trip, the window's figures.
pub fn guard_json(snapshot: &Snapshot) -> serde_json::Value {
    let f = &snapshot.figures;
    serde_json::json!({
        "state": match snapshot.state {
            State::Disabled => "disabled",
            State::Armed => "armed",
            State::Tripped => "tripped",
        },
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

fn guard_section(snapshot: &Snapshot) -> String {
    if snapshot.state == State::Disabled {
        return "<p>disabled (<code>[guard] enabled = false</code>)</p>".into();
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
    let last = snapshot
        .last_trip
        .as_deref()
        .map_or(String::new(), |r| format!(" — {}", escape(r)));
    format!(
        "<p class=\"big\">{state}</p><p>{last_label}{last}</p>\n\
         <table><tr><th>condition (window {window}, judged from {min})</th><th>now</th><th>limit</th><th>counts</th></tr>\n\
         <tr><td>failure ratio (SES upstream)</td><td>{failure}</td><td>{max_failure}</td><td>{failures} of {outcomes}</td></tr>\n\
         <tr><td>reject ratio (SES refusals, from {min_clients}+ clients)</td><td>{reject}</td><td>{max_reject}</td><td>{rejected} of {outcomes} from {reject_clients} clients</td></tr>\n\
         <tr><td>delay p95</td><td>{p95}</td><td>{max_delay}</td><td>{delays} messages</td></tr>\n\
         <tr><td>bounce ratio</td><td>{bounce}</td><td>{max_bounce}</td><td>{bounces} of {sends} sends</td></tr>\n\
         <tr><td>complaint ratio</td><td>{complaint}</td><td>{max_complaint}</td><td>{complaints} of {sends} sends</td></tr>\n\
         </table>",
        state = state_name(snapshot),
        last_label = if snapshot.last_trip.is_some() {
            "last trip"
        } else {
            "no trip"
        },
        window = format_duration(t.window),
        min = t.min_transactions,
        failure = ratio(f.failures, f.outcomes),
        max_failure = format_ratio(t.max_failure_ratio),
        failures = f.failures,
        outcomes = f.outcomes,
        reject = ratio(f.rejected, f.outcomes),
        max_reject = format_ratio(t.max_reject_ratio),
        rejected = f.rejected,
        reject_clients = f.reject_clients,
        min_clients = t.min_reject_clients,
        p95 = f.delay_p95.map_or("–".to_string(), format_duration),
        max_delay = format_duration(t.max_delay),
        delays = f.delays,
        bounce = ratio(f.bounces, f.sends),
        max_bounce = format_ratio(t.max_bounce_ratio),
        bounces = f.bounces,
        sends = f.sends,
        complaint = ratio(f.complaints, f.sends),
        max_complaint = format_ratio(t.max_complaint_ratio),
        complaints = f.complaints,
    )
}

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
    for route in [Route::Ses, Route::Legacy] {
        if route == Route::Legacy && !relay.router.has_legacy() {
            continue;
        }
        let t = metrics::recent().totals(route);
        let ratio = t
            .success_ratio()
            .map_or("–".to_string(), |r| format!("{:.2} %", r * 100.0));
        routes.push_str(&format!(
            "<tr><td>{route}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{ratio}</td></tr>\n",
            t.delivered, t.deferred, t.rejected, t.refused
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
<p>source: {source}{change}{store}{pending}</p>
<p>legacy relay: <b>{legacy}</b></p>
<ol>{rules}</ol>
<h2>Rollback guard</h2>
{guard}
<h2>Last 5 minutes</h2>
<table><tr><th>route</th>{headings}<th>success</th></tr>
{routes}</table>
<p><a href="/metrics">/metrics</a> · <a href="/cutover">/cutover</a> · <a href="/readyz">/readyz</a></p>
</body></html>
"#,
        headings = Disposition::ALL
            .map(|d| format!("<th>{}</th>", d.heading()))
            .concat(),
        version = crate::build_info::LONG_VERSION,
        hours = uptime / 3600,
        minutes = uptime % 3600 / 60,
        sessions = metrics::open_sessions(),
        shutting = if relay.shutdown.is_triggered() {
            " · <b>shutting down</b>"
        } else {
            ""
        },
        percent = status.ses_percent,
        source = match (status.source, status.store) {
            (crate::cutover::Source::Config, _) => "config file",
            (crate::cutover::Source::StateFile, _) => "state file (set at runtime)",
            (crate::cutover::Source::Api, _) => "admin API (shared through SSM)",
            (crate::cutover::Source::Guard, crate::config::CutoverStore::File) => {
                "rollback guard (state file)"
            }
            (crate::cutover::Source::Guard, crate::config::CutoverStore::Ssm) => {
                "rollback guard (shared through SSM)"
            }
        },
        guard = guard_section(&relay.guard.snapshot()),
        pending = if status.pending_write {
            " · <b>written here, not yet in SSM</b>"
        } else {
            ""
        },
        legacy = super::legacy_health(relay),
        change = match (&status.updated_at, &status.reason) {
            (Some(at), Some(reason)) => format!(" · changed {} — {}", escape(at), escape(reason)),
            _ => String::new(),
        },
        store = match (status.store, status.version) {
            (crate::config::CutoverStore::Ssm, version) => format!(
                " · shared through SSM, version {}, last read {}",
                version.map_or("none".to_string(), |v| v.to_string()),
                escape(status.refreshed_at.as_deref().unwrap_or("never"))
            ),
            (crate::config::CutoverStore::File, _) => String::new(),
        },
    )
}

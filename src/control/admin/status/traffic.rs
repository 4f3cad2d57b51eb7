//! The status page's traffic sections: each route's reachability,
//! transactions and upstream latency over five minutes, the top error
//! codes, and the last transactions not delivered.

use std::time::Duration;

use super::{escape, metric, series, table, td, time};
use crate::control::admin::AdminState;
use crate::message::disposition::Disposition;
use crate::message::route::Route;
use crate::metrics::{self, OTHER_CODE};

/// Error codes listed.
const TOP_ERRORS: usize = 5;

/// `0.8 ms`, `42 ms`, `1.25 s`: three figures at most, the unit a person expects.
fn latency(value: Duration) -> String {
    let ms = value.as_secs_f64() * 1000.0;
    if ms < 10.0 {
        format!("{ms:.1} ms")
    } else if ms < 1000.0 {
        format!("{ms:.0} ms")
    } else {
        format!("{:.2} s", value.as_secs_f64())
    }
}

/// The route's reachability: the legacy relay's probe as `GET /cutover`
/// shows it; SES has no probe (its success ratio beside says how it answers).
fn reachability(state: &AdminState, route: Route) -> String {
    if route == Route::Ses {
        return td("reachability", "", "not probed");
    }
    let health = crate::control::admin::legacy_health(state);
    let up = match health {
        "up" => Some(1),
        "down" => Some(0),
        _ => None,
    };
    let attrs = up.map_or(String::new(), |up| {
        format!(
            "{} data-value=\"{up}\"",
            metric(&series(metrics::UPSTREAM_UP, &[("route", "legacy")]))
        )
    });
    let class = if up == Some(0) { " class=\"bad\"" } else { "" };
    td(
        "reachability",
        &attrs,
        format!("<span{class} data-cutover=\"upstreams.legacy\">{health}</span>"),
    )
}

/// One row per route in use.
pub(super) fn routes(state: &AdminState) -> String {
    let window = metrics::recent();
    let mut rows = String::new();
    for route in [Route::Ses, Route::Legacy] {
        if route == Route::Legacy && !state.router.has_legacy() {
            continue;
        }
        let totals = window.totals(route);
        let mut row = format!(
            "<tr data-route=\"{route}\">{}{}",
            td("route", "", route),
            reachability(state, route)
        );
        for (disposition, count) in [
            (Disposition::Delivered, totals.delivered),
            (Disposition::Deferred, totals.deferred),
            (Disposition::Rejected, totals.rejected),
            (Disposition::Refused, totals.refused),
        ] {
            let counter = series(
                metrics::TRANSACTIONS,
                &[("route", route.as_str()), ("result", disposition.as_str())],
            );
            row.push_str(&td(disposition.heading(), &metric(&counter), count));
        }
        let success = totals
            .success_ratio()
            .map_or("–".to_string(), |r| format!("{:.2} %", r * 100.0));
        row.push_str(&td("success", "", success));
        let (p50, p99) = match window.latency(route) {
            Some(l) => (
                td(
                    "upstream p50",
                    &format!(" data-seconds=\"{}\"", l.p50.as_secs_f64()),
                    latency(l.p50),
                ),
                td(
                    "upstream p99",
                    &format!(" data-seconds=\"{}\"", l.p99.as_secs_f64()),
                    latency(l.p99),
                ),
            ),
            None => (td("upstream p50", "", "–"), td("upstream p99", "", "–")),
        };
        row.push_str(&p50);
        row.push_str(&p99);
        row.push_str("</tr>\n");
        rows.push_str(&row);
    }
    let mut headings = vec!["route", "reachability"];
    headings.extend(Disposition::ALL.map(Disposition::heading));
    headings.extend(["success", "upstream p50", "upstream p99"]);
    format!(
        "{}\n<p>Success: delivered of delivered, deferred and rejected (refused is the client's own mistake). \
         Upstream: time from handing the message over to the upstream's answer.</p>",
        table("routes-table", &headings, &rows)
    )
}

/// Whether `code` is one of SES's (a name), which
/// `ses_relay_ses_errors_total` counts too, rather than an SMTP reply code.
fn is_ses_code(route: Route, code: &str) -> bool {
    route == Route::Ses
        && code != OTHER_CODE
        && code.chars().next().is_some_and(|c| c.is_ascii_alphabetic())
}

/// The most frequent error codes.
pub(super) fn top_errors() -> String {
    let top = metrics::recent().top_errors(TOP_ERRORS);
    if top.is_empty() {
        return "<p id=\"errors-none\">none: every transaction of the last 5 minutes was delivered</p>".into();
    }
    let rows: String = top
        .iter()
        .map(|e| {
            let hook = if is_ses_code(e.route, &e.code) {
                metric(&series(metrics::SES_ERRORS, &[("error", &e.code)]))
            } else {
                String::new()
            };
            let code = escape(&e.code);
            format!(
                "<tr data-route=\"{}\" data-code=\"{code}\">{}{}{}</tr>\n",
                e.route,
                td("route", "", e.route),
                td("code", " class=\"text\"", format!("<code>{code}</code>")),
                td("count", &hook, e.count),
            )
        })
        .collect();
    format!(
        "{}\n<p>SES's error code when SES named one, else the reply code and its enhanced status.</p>",
        table("errors-table", &["route", "code", "count"], &rows)
    )
}

/// The last transactions not delivered, newest first.
pub(super) fn not_delivered() -> String {
    let last = metrics::last_not_delivered().newest_first();
    if last.is_empty() {
        return "<p id=\"not-delivered-none\">none since the start</p>".into();
    }
    let rows: String = last
        .iter()
        .map(|t| {
            let to = match (&t.first_rcpt, t.rcpts) {
                (Some(first), 0 | 1) => escape(first),
                (Some(first), n) => format!("{} (+{} more)", escape(first), n - 1),
                (None, _) => "–".to_string(),
            };
            format!(
                "<tr data-route=\"{route}\" data-result=\"{result}\">{}{}{}{}{}{}{}</tr>\n",
                td("time (UTC)", "", time(t.at)),
                td("route", "", t.route),
                td("result", "", t.disposition.as_str()),
                td("reply", " class=\"text reply\"", escape(&t.reply)),
                td("from", " class=\"text\"", escape(&t.from)),
                td("to", " class=\"text\"", to),
                td("id", " class=\"text\"", escape(&t.id)),
                route = t.route,
                result = t.disposition.as_str(),
            )
        })
        .collect();
    table(
        "not-delivered-table",
        &["time (UTC)", "route", "result", "reply", "from", "to", "id"],
        &rows,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn latency_reads_in_the_unit_a_person_expects() {
        assert_eq!(latency(Duration::from_micros(830)), "0.8 ms");
        assert_eq!(latency(Duration::from_millis(42)), "42 ms");
        assert_eq!(latency(Duration::from_millis(1250)), "1.25 s");
    }

    #[test]
    fn only_named_ses_codes_have_a_metric() {
        assert!(is_ses_code(Route::Ses, "MessageRejected"));
        assert!(!is_ses_code(Route::Ses, "451 4.4.1"));
        assert!(!is_ses_code(Route::Ses, OTHER_CODE));
        assert!(!is_ses_code(Route::Legacy, "timeout"));
    }
}

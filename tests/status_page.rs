//! The status page in a real browser: headless Chromium (Debian's package,
//! driven by playwright from the test venv, tests/peers/status_page.py) opens
//! `GET /` at a phone's width after traffic through both routes, failures
//! included, and the page must render without a console error or a dialog,
//! show the numbers `/metrics` and `GET /cutover` give, number each list
//! item once, mask addresses as the log does, and fit 390 pixels without
//! horizontal scrolling. The screenshot is kept under target/tmp.
//!
//! One test in this binary: the metrics are process-wide, so the page's
//! five-minute counts equal the counters only if nothing else runs here.

mod common;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Duration;

use common::admin::{cutover, set_cutover};
use common::client::deliver;
use common::guard::{TOKEN, guard_config};
use common::metrics::Metrics;
use common::peers::venv;
use common::ses_fake::{Mode, SesFake};
use common::smtp_sink::SmtpSink;
use common::wait::{ok_if, wait_until_async};
use common::{RunningRelay, TempDir};
use serde_json::Value;

const MESSAGE: &str = "From: a@goo.ne.jp\r\nSubject: status\r\n\r\nbody";

/// One transaction; the final reply (or the reply that ended it early).
async fn send(relay: &RunningRelay, from: &str, to: &str, message: &str) -> String {
    let reply = deliver(relay.addr, from, &[to], message).await;
    reply.trim_end().to_string()
}

/// `a.b` in `json`.
fn field<'a>(json: &'a Value, path: &str) -> &'a Value {
    path.split('.').fold(json, |v, key| &v[key])
}

/// Whether the page's `shown` is `expected` (a JSON number or string).
fn same(shown: &str, expected: &Value) -> bool {
    match expected {
        Value::Number(n) => shown
            .parse::<f64>()
            .is_ok_and(|s| (s - n.as_f64().unwrap()).abs() < 1e-9),
        Value::String(s) => shown == s,
        _ => false,
    }
}

/// Runs the browser driver on `url`; its facts.
async fn browse(url: &str, screenshot: &Path, wide: &Path) -> Value {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/peers/status_page.py");
    let run = tokio::process::Command::new(venv().join("bin/python"))
        .arg(script)
        .arg(url)
        .arg(screenshot)
        .arg(wide)
        .kill_on_drop(true)
        .output();
    let out = tokio::time::timeout(Duration::from_secs(120), run)
        .await
        .expect("the browser finishes within 2 minutes")
        .expect("the venv's python starts");
    assert!(
        out.status.success(),
        "browser driver failed: {}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("the driver prints JSON")
}

fn list(facts: &Value, key: &str) -> Vec<Value> {
    facts[key].as_array().cloned().unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(
    not(has_chromium),
    ignore = "needs chromium: run tests/peers/install.sh"
)]
async fn the_status_page_in_a_phone_sized_browser_shows_what_metrics_and_cutover_say() {
    let ses = SesFake::start().await;
    let sink = SmtpSink::start().await;
    let dir = TempDir::new("status-page");
    // The guard counts but never trips: its figures are shown, the share stays.
    let mut config = guard_config(&ses.endpoint(), &sink, &dir, 1_000);
    config.cutover.rules = vec![
        toml::from_str("recipient-domains = [\"legacy.example\"]\nroute = \"legacy\"").unwrap(),
        toml::from_str("sender-domains = [\"legacy-sender.example\"]\nroute = \"legacy\"").unwrap(),
    ];
    let relay = RunningRelay::start(config).await;
    let answer = set_cutover(&relay, TOKEN, 100.0, "night shift <b>check</b>").await;
    assert_eq!(answer.status, 200, "{}", answer.body);

    for _ in 0..3 {
        let reply = send(&relay, "a@goo.ne.jp", "b@example.com", MESSAGE).await;
        assert!(reply.starts_with("250 "), "{reply}");
    }
    let reply = send(&relay, "a@goo.ne.jp", "b@legacy.example", MESSAGE).await;
    assert!(reply.starts_with("250 "), "{reply}");
    ses.set_mode(Mode::Reject(
        "MessageRejected",
        "Email address is not verified: <script>alert(1)</script> secret-in-reply@victim.example",
    ));
    for _ in 0..2 {
        let reply = send(
            &relay,
            "night-sender@goo.ne.jp",
            "secret-rcpt@victim.example",
            MESSAGE,
        )
        .await;
        assert!(reply.starts_with("554 5.7.1"), "{reply}");
    }
    ses.set_mode(Mode::Reject(
        "MailFromDomainNotVerifiedException",
        "MAIL FROM domain not verified",
    ));
    let reply = send(&relay, "a@goo.ne.jp", "b@example.com", MESSAGE).await;
    assert!(reply.starts_with("554 "), "{reply}");
    let reply = send(&relay, "defer-data@goo.ne.jp", "b@legacy.example", MESSAGE).await;
    assert!(reply.starts_with("451 4.3.0"), "{reply}");
    let bare_lf = "From: a@goo.ne.jp\r\nSubject: m\r\n\r\nbare\nLF";
    let reply = send(&relay, "a@goo.ne.jp", "b@example.com", bare_lf).await;
    assert!(reply.starts_with("550 5.5.2"), "{reply}");
    let not_delivered = 5;

    // The legacy relay's probe has answered, so its reachability is a figure.
    wait_until_async(Duration::from_secs(20), || async {
        ok_if(
            cutover(&relay).await["upstreams"]["legacy"] == "up",
            "legacy probe never saw the sink",
        )
    })
    .await;

    let shots = PathBuf::from(env!("CARGO_TARGET_TMPDIR"));
    let (screenshot, wide) = (
        shots.join("status-page-390px.png"),
        shots.join("status-page-1280px.png"),
    );
    for old in [&screenshot, &wide] {
        let _ = std::fs::remove_file(old);
    }
    let url = format!("http://{}/", relay.admin_addr.unwrap());
    let facts = browse(&url, &screenshot, &wide).await;
    let metrics = Metrics::of(&relay).await;
    let cutover = cutover(&relay).await;
    {
        // Written past libtest's capture, so the path shows on a pass too.
        let mut stderr = std::io::stderr().lock();
        let _ = writeln!(
            stderr,
            "status page screenshots: {} (390 px, a phone), {} (1280 px)",
            screenshot.display(),
            wide.display()
        );
    }
    for shot in [&screenshot, &wide] {
        assert!(shot.exists(), "no screenshot at {}", shot.display());
    }

    // Rendered, with nothing on the console and no script anywhere.
    assert_eq!(facts["status"], 200, "{facts}");
    assert_eq!(facts["title"], "ses-relay status");
    assert!(
        list(&facts, "console").is_empty(),
        "console: {}",
        facts["console"]
    );
    assert!(
        list(&facts, "page_errors").is_empty(),
        "{}",
        facts["page_errors"]
    );
    assert!(
        list(&facts, "failed_requests").is_empty(),
        "{}",
        facts["failed_requests"]
    );
    assert!(
        list(&facts, "dialogs").is_empty(),
        "a script ran: {}",
        facts["dialogs"]
    );
    assert_eq!(facts["scripts"], 0);

    // A phone: 390 px wide, the page no wider, the tables as labelled blocks.
    assert_eq!(facts["inner_width"], 390, "{facts}");
    assert_eq!(
        facts["client_width"], 390,
        "viewport meta honoured: {facts}"
    );
    assert!(
        facts["scroll_width"].as_u64().unwrap() <= 390
            && facts["body_scroll_width"].as_u64().unwrap() <= 390,
        "the page scrolls sideways: {} / {} px",
        facts["scroll_width"],
        facts["body_scroll_width"]
    );
    assert_eq!(facts["narrow_cell_display"], "block");

    // Every figure with a hook equals /metrics or GET /cutover.
    let hooks = list(&facts, "metrics");
    assert!(hooks.len() >= 15, "{hooks:?}");
    for hook in &hooks {
        let (series, shown) = (
            hook["name"].as_str().unwrap(),
            hook["value"].as_str().unwrap(),
        );
        let expected = metrics.series(series);
        assert_eq!(
            shown.parse::<f64>().ok(),
            Some(expected),
            "{series}: page {shown}, /metrics {expected}"
        );
    }
    for name in [
        "ses_relay_cutover_ses_percent",
        "ses_relay_transactions_total{route=\"ses\",result=\"rejected\"}",
        "ses_relay_transactions_total{route=\"legacy\",result=\"deferred\"}",
        "ses_relay_ses_errors_total{error=\"MessageRejected\"}",
        "ses_relay_upstream_up{route=\"legacy\"}",
        "ses_relay_dkim_dns_consistent{domain=\"goo.ne.jp\",selector=\"gooid-21-prod\"}",
    ] {
        assert!(hooks.iter().any(|h| h["name"] == name), "no hook {name}");
    }
    let hooked = |facts: &Value, key: &str, json: &Value, wanted: &[&str]| {
        let hooks = list(facts, key);
        for hook in &hooks {
            let name = hook["name"].as_str().unwrap();
            let shown = hook["value"].as_str().unwrap();
            assert!(
                same(shown, field(json, name)),
                "{key} {name}: page {shown:?}, GET /cutover {}",
                field(json, name)
            );
        }
        for name in wanted {
            assert!(
                hooks.iter().any(|h| h["name"] == *name),
                "no {key} hook {name}"
            );
        }
    };
    hooked(
        &facts,
        "cutover",
        &cutover,
        &[
            "ses_percent",
            "source",
            "reason",
            "updated_at",
            "change_id",
            "upstreams.legacy",
        ],
    );
    hooked(
        &facts,
        "guard",
        &cutover["guard"],
        &[
            "state",
            "outcomes",
            "failures",
            "rejected",
            "window_seconds",
        ],
    );
    assert_eq!(cutover["reason"], "night shift <b>check</b>");
    assert_eq!(cutover["guard"]["outcomes"], 6, "{cutover}");

    // Each list item's number appears once: the list's marker, not the text.
    let lists = list(&facts, "lists");
    assert!(!lists.is_empty());
    for items in &lists {
        for (n, item) in items.as_array().unwrap().iter().enumerate() {
            let text = item["text"].as_str().unwrap();
            assert_eq!(item["marker"], "decimal", "{item}");
            assert!(
                !text.starts_with(&format!("{}", n + 1)),
                "item {} numbered twice: {text}",
                n + 1
            );
        }
    }

    // Routes: both, each with its upstream latency.
    let routes = list(&facts, "routes");
    assert_eq!(routes.len(), 2, "{routes:?}");
    for route in &routes {
        let seconds = route["seconds"].as_array().unwrap();
        assert_eq!(seconds.len(), 2, "p50 and p99: {route}");
        let (p50, p99) = (seconds[0].as_f64().unwrap(), seconds[1].as_f64().unwrap());
        assert!(p50 > 0.0 && p50 <= p99 && p99 < 30.0, "{route}");
    }
    assert_eq!(routes[1]["cells"]["reachability"], "up");

    // Top error codes: the most frequent first, and every failure counted.
    let errors = list(&facts, "errors");
    let codes: Vec<(String, String)> = errors
        .iter()
        .map(|e| {
            (
                e["attrs"]["data-code"].as_str().unwrap().to_string(),
                e["cells"]["count"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    assert_eq!(
        codes[0],
        ("MessageRejected".into(), "2".into()),
        "{codes:?}"
    );
    for expected in [
        "MailFromDomainNotVerifiedException",
        "451 4.3.0",
        "550 5.5.2",
    ] {
        assert!(
            codes.iter().any(|(c, n)| c == expected && n == "1"),
            "{expected}: {codes:?}"
        );
    }
    let failed: f64 = ["ses", "legacy"]
        .iter()
        .flat_map(|route| {
            ["deferred", "rejected", "refused"].map(|result| {
                metrics.get(
                    "ses_relay_transactions_total",
                    &[("route", route), ("result", result)],
                )
            })
        })
        .sum();
    assert_eq!(failed, not_delivered as f64);
    let counted: u64 = codes.iter().map(|(_, n)| n.parse::<u64>().unwrap()).sum();
    assert_eq!(counted, not_delivered);

    // The last not delivered, newest first, masked as the log masks them,
    // an upstream's markup shown as text.
    let last = list(&facts, "not_delivered");
    assert_eq!(last.len(), not_delivered as usize, "{last:?}");
    assert_eq!(last[0]["attrs"]["data-result"], "refused");
    assert!(
        last[0]["cells"]["reply"]
            .as_str()
            .unwrap()
            .starts_with("550 5.5.2")
    );
    let rejected = &last[3]["cells"];
    assert_eq!(rejected["from"], "n***@goo***.***", "{rejected}");
    assert_eq!(rejected["to"], "s***@vic***.***", "{rejected}");
    let reply = rejected["reply"].as_str().unwrap();
    assert!(
        reply.starts_with(
            "554 5.7.1 Email address is not verified: <script>alert(1)</script> s***@vic***.***"
        ),
        "{reply}"
    );
    for row in &last {
        let at = row["cells"]["time (UTC)"].as_str().unwrap();
        assert!(humantime::parse_rfc3339(at).is_ok(), "{at}");
    }
    let text = facts["text"].as_str().unwrap();
    for secret in [
        "victim.example",
        "night-sender",
        "secret-rcpt",
        "secret-in-reply",
    ] {
        assert!(!text.contains(secret), "{secret} shown unmasked");
    }

    // DKIM: the key, signing, its record consistent at the last check.
    let dkim = list(&facts, "dkim");
    assert_eq!(dkim.len(), 1, "{dkim:?}");
    assert_eq!(dkim[0]["cells"]["state"], "signing");
    assert_eq!(dkim[0]["cells"]["DNS"], "consistent");

    // Generated now, in UTC; the runbook link lands on its section, which fits too.
    let generated = humantime::parse_rfc3339(facts["generated"].as_str().unwrap()).unwrap();
    let age = std::time::SystemTime::now()
        .duration_since(generated)
        .unwrap();
    assert!(age < Duration::from_secs(120), "{age:?}");
    assert_eq!(facts["runbook_links"][0], "/runbook#cutover-runbook");
    let runbook = &facts["runbook"];
    assert_eq!(runbook["url"], "/runbook#cutover-runbook");
    assert_eq!(runbook["target"], true, "{runbook}");
    assert!(
        runbook["scroll_width"].as_u64().unwrap() <= 390,
        "{runbook}"
    );

    assert!(relay.stop().await);
}

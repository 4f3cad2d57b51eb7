//! Metrics: names, help texts, the helpers that record them, the Prometheus
//! recorder (rendered by the admin API's `GET /metrics`, histograms with
//! explicit buckets), and what the status page shows beside them: a
//! five-minute window per route, the last transactions not delivered, each
//! DKIM key's last DNS check.

use std::sync::OnceLock;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::Instant;

use metrics::{counter, gauge, histogram};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};

use crate::message::disposition::Disposition;
use crate::message::route::Route;

/// Connections by outcome, each counted once: `accepted` (a session
/// started), `denied` (not an allowed client), `overloaded` (connection
/// cap), `tls_failed` (the implicit-TLS handshake failed, so no session
/// started), and the PROXY header's failures (`proxy_header_missing`,
/// `proxy_header_invalid`).
/// A STARTTLS handshake that fails ends a session already counted
/// `accepted`: it is counted in [`SMTP_TLS_FAILURES`] only.
pub const SMTP_CONNECTIONS: &str = "ses_relay_smtp_connections_total";
/// TLS handshakes that failed, by `mode` (`implicit`, `starttls`).
pub const SMTP_TLS_FAILURES: &str = "ses_relay_smtp_tls_failures_total";
/// Sessions open now.
pub const SMTP_SESSIONS: &str = "ses_relay_smtp_sessions";
/// Replies sent, by code class (`2xx`, `4xx`, `5xx`) and command.
pub const SMTP_REPLIES: &str = "ses_relay_smtp_replies_total";
/// Transactions by `route` (`ses`, `legacy`) and `result` (`delivered`, `deferred`,
/// `rejected`, `refused`). `refused` is the client's own mistake (bare CR/LF,
/// oversize): it is kept out of every success ratio.
pub const TRANSACTIONS: &str = "ses_relay_transactions_total";
/// Recipients by `route` and `result`.
pub const RECIPIENTS: &str = "ses_relay_recipients_total";
/// Size of the message sent upstream, by `route`.
pub const MESSAGE_SIZE: &str = "ses_relay_message_size_bytes";
/// Time spent upstream (SES call, legacy DATA), by `route`.
pub const DELIVERY_DURATION: &str = "ses_relay_delivery_duration_seconds";
/// End of DATA to final reply, by `route`.
pub const TRANSACTION_DURATION: &str = "ses_relay_transaction_duration_seconds";
/// Signatures made, by `domain` and `selector`.
pub const DKIM_SIGNATURES: &str = "ses_relay_dkim_signatures_total";
/// Time one signature took.
pub const DKIM_SIGN_DURATION: &str = "ses_relay_dkim_sign_duration_seconds";
/// SES failures by SES `error` code (`Throttling`, `MessageRejected`, `timeout`, ...).
pub const SES_ERRORS: &str = "ses_relay_ses_errors_total";
/// Legacy route failures by `kind`: `connect`, `tls`, `auth`, `lost`, `pool_full`, `reply_4xx`, `reply_5xx`.
pub const LEGACY_ERRORS: &str = "ses_relay_legacy_errors_total";
/// The SES percentage applied to new transactions.
pub const CUTOVER_SES_PERCENT: &str = "ses_relay_cutover_ses_percent";
/// 1 when the DKIM TXT record in DNS matches the private key, 0 when not, by `domain` and `selector`.
pub const DKIM_DNS_CONSISTENT: &str = "ses_relay_dkim_dns_consistent";
/// Bytes of message data held by all sessions (received, not yet delivered),
/// against `smtp.max-data-memory`.
pub const DATA_MEMORY: &str = "ses_relay_data_memory_bytes";
/// Failed reads and writes of the shared cutover store (SSM); routing stays on the last value.
pub const CUTOVER_STORE_ERRORS: &str = "ses_relay_cutover_store_errors_total";
/// SSM parameter version of the cutover value in force (compare across the fleet).
pub const CUTOVER_STORE_VERSION: &str = "ses_relay_cutover_store_version";
/// 1 while the health probe reaches the route's upstream, 0 while it does not,
/// by `route` (`legacy`: the legacy relay's greeting, probed every 5 s by one
/// background task). Not readiness: every relay shares the same upstreams.
pub const UPSTREAM_UP: &str = "ses_relay_upstream_up";
/// Always 1, labelled with the running `version`, git `commit` and `build_date`.
pub const BUILD_INFO: &str = "ses_relay_build_info";
/// From the topmost `Received:` date at arrival (the client, the Postfix that handed the message over, took it)
/// to the upstream's acceptance, by `route`; messages without a parseable date are left out.
pub const DELIVERY_DELAY: &str = "ses_relay_delivery_delay_seconds";
/// Rollback guard trips by `condition`: `failure-ratio`, `delay`, `bounce-ratio`,
/// `complaint-ratio`, `ses-paused`, `reject-ratio`.
pub const GUARD_TRIPS: &str = "ses_relay_guard_trips_total";
/// 1 while the rollback guard is tripped (until an operator's cutover change re-arms it).
pub const GUARD_TRIPPED: &str = "ses_relay_guard_tripped";
/// SES events read from the feedback queue, by `type`: `send`, `delivery`,
/// `bounce` (permanent), `transient_bounce`, `complaint`, `reject`,
/// `delivery_delay`, `other`, `malformed` (unparseable, deleted).
pub const SES_EVENTS: &str = "ses_relay_ses_events_total";
/// 1 for the key that signs its domain's mail now, 0 for the domain's other
/// keys, by `domain` and `selector`.
pub const DKIM_KEY_ACTIVE: &str = "ses_relay_dkim_key_active";
/// Age of each key (since `created`, else its file's modification time), by `domain` and `selector`.
pub const DKIM_KEY_AGE: &str = "ses_relay_dkim_key_age_seconds";
/// Consecutive DNS checks whose record matched the key, by `domain` and `selector`.
pub const DKIM_KEY_CONFIRMATIONS: &str = "ses_relay_dkim_key_confirmations";
/// 1 for a key newer than its domain's signing key that does not sign yet
/// (its record not yet confirmed `publish-confirmations` times), by `domain` and `selector`.
pub const DKIM_KEY_PENDING: &str = "ses_relay_dkim_key_pending";
/// `dkim.max-key-age - dkim.rotation-notice`: the signing key's age at which
/// `SesRelayDkimKeyExpiring` fires.
pub const DKIM_KEY_NOTICE_AGE: &str = "ses_relay_dkim_key_notice_age_seconds";
/// Messages from the feedback queue that are not counted nor judged, by
/// `reason`: `configuration-set` (another configuration set's, or none),
/// `account` (not `feedback.account-id`'s), `topic` (not `feedback.topic-arn`'s),
/// `duplicate` (already counted within the guard's window), `malformed`.
pub const SES_EVENTS_IGNORED: &str = "ses_relay_ses_events_ignored_total";
/// The `reason` labels of [`SES_EVENTS_IGNORED`].
pub const SES_EVENTS_IGNORED_REASONS: [&str; 5] = [
    "configuration-set",
    "account",
    "topic",
    "duplicate",
    "malformed",
];

const SIZE_BUCKETS: &[f64] = &[
    1024.0, 4096.0, 16384.0, 65536.0, 262144.0, 1048576.0, 4194304.0, 16777216.0, 41943040.0,
];
const DURATION_BUCKETS: &[f64] = &[
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0,
];
/// Seconds to hours: the plan's bound is 5 minutes.
const DELAY_BUCKETS: &[f64] = &[
    1.0, 5.0, 15.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1800.0, 3600.0, 14400.0,
];
const SIGN_BUCKETS: &[f64] = &[0.0002, 0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1];

static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
static SESSIONS: AtomicI64 = AtomicI64::new(0);
static STARTED: OnceLock<Instant> = OnceLock::new();

/// Installs the Prometheus recorder (once per process) and describes every metric.
pub fn install() -> &'static PrometheusHandle {
    HANDLE.get_or_init(|| {
        let _ = STARTED.set(Instant::now());
        let mut builder = PrometheusBuilder::new();
        for (name, buckets) in [
            (MESSAGE_SIZE, SIZE_BUCKETS),
            (DELIVERY_DURATION, DURATION_BUCKETS),
            (TRANSACTION_DURATION, DURATION_BUCKETS),
            (DKIM_SIGN_DURATION, SIGN_BUCKETS),
            (DELIVERY_DELAY, DELAY_BUCKETS),
        ] {
            builder = builder
                .set_buckets_for_metric(Matcher::Full(name.to_string()), buckets)
                .expect("bucket lists are not empty");
        }
        let recorder = builder.build_recorder();
        let handle = recorder.handle();
        // Another recorder (a test harness) may already be installed; ours still renders what it gets.
        let _ = metrics::set_global_recorder(recorder);
        describe();
        gauge!(
            BUILD_INFO,
            "version" => crate::daemon::build_info::VERSION,
            "commit" => crate::daemon::build_info::COMMIT,
            "build_date" => crate::daemon::build_info::BUILD_DATE
        )
        .set(1.0);
        process_collector().describe();
        gauge!(DATA_MEMORY).set(0.0);
        describe::register_guard();
        handle
    })
}

/// The standard process metrics (`process_resident_memory_bytes`,
/// `process_cpu_seconds_total`, `process_open_fds`, `process_start_time_seconds`, ...),
/// read from /proc at each scrape.
fn process_collector() -> &'static metrics_process::Collector {
    static COLLECTOR: OnceLock<metrics_process::Collector> = OnceLock::new();
    COLLECTOR.get_or_init(metrics_process::Collector::default)
}

/// The Prometheus text exposition of every metric.
pub fn render() -> String {
    let handle = install();
    process_collector().collect();
    handle.run_upkeep();
    handle.render()
}

/// The `condition` labels of the guard's trips, in `guard::Condition`'s order.
pub const GUARD_CONDITIONS: [&str; 6] = [
    "failure-ratio",
    "delay",
    "bounce-ratio",
    "complaint-ratio",
    "ses-paused",
    "reject-ratio",
];

/// Records one delivery delay.
pub fn delivery_delay(route: &'static str, seconds: f64) {
    histogram!(DELIVERY_DELAY, "route" => route).record(seconds);
}

/// Counts one rollback guard trip.
pub fn guard_trip(condition: &'static str) {
    counter!(GUARD_TRIPS, "condition" => condition).increment(1);
}

/// Publishes whether the rollback guard is tripped.
pub fn guard_tripped(tripped: bool) {
    gauge!(GUARD_TRIPPED).set(if tripped { 1.0 } else { 0.0 });
}

/// Counts one SES event by type.
pub fn ses_event(kind: &'static str) {
    counter!(SES_EVENTS, "type" => kind).increment(1);
}

/// Counts one feedback queue message not counted nor judged, by reason.
pub fn ses_event_ignored(reason: &'static str) {
    counter!(SES_EVENTS_IGNORED, "reason" => reason).increment(1);
}

/// Seconds since the recorder was installed (the process start, in practice).
pub fn uptime_seconds() -> u64 {
    STARTED.get().map_or(0, |t| t.elapsed().as_secs())
}

/// Counts a connection outcome.
pub fn connection(result: &'static str) {
    counter!(SMTP_CONNECTIONS, "result" => result).increment(1);
}

/// Counts one failed TLS handshake.
pub fn tls_failure(mode: &'static str) {
    counter!(SMTP_TLS_FAILURES, "mode" => mode).increment(1);
}

/// Tracks open sessions.
pub fn sessions(delta: i64) {
    let now = SESSIONS.fetch_add(delta, Ordering::Relaxed) + delta;
    gauge!(SMTP_SESSIONS).set(now as f64);
}

/// Sessions open now.
pub fn open_sessions() -> i64 {
    SESSIONS.load(Ordering::Relaxed)
}

/// Counts one reply.
pub fn reply(code: u16, command: &'static str) {
    let class = match code / 100 {
        2 => "2xx",
        3 => "3xx",
        4 => "4xx",
        _ => "5xx",
    };
    counter!(SMTP_REPLIES, "class" => class, "command" => command).increment(1);
}

/// Records one finished transaction.
pub fn transaction(
    route: Route,
    result: Disposition,
    recipients: usize,
    size: usize,
    upstream: f64,
    total: f64,
) {
    let (label, result_label) = (route.as_str(), result.as_str());
    counter!(TRANSACTIONS, "route" => label, "result" => result_label).increment(1);
    counter!(RECIPIENTS, "route" => label, "result" => result_label).increment(recipients as u64);
    if size > 0 {
        histogram!(MESSAGE_SIZE, "route" => label).record(size as f64);
        histogram!(DELIVERY_DURATION, "route" => label).record(upstream);
    }
    histogram!(TRANSACTION_DURATION, "route" => label).record(total);
    recent().record(route, result);
}

/// Records one DKIM signature.
pub fn dkim_signature(domain: &str, selector: &str, seconds: f64) {
    counter!(DKIM_SIGNATURES, "domain" => domain.to_string(), "selector" => selector.to_string())
        .increment(1);
    histogram!(DKIM_SIGN_DURATION).record(seconds);
}

/// Counts one SES failure.
pub fn ses_error(code: &str) {
    counter!(SES_ERRORS, "error" => code.to_string()).increment(1);
}

/// Publishes the message bytes held now.
pub fn data_memory(bytes: usize) {
    gauge!(DATA_MEMORY).set(bytes as f64);
}

/// Counts one legacy route failure.
pub fn legacy_error(kind: &'static str) {
    counter!(LEGACY_ERRORS, "kind" => kind).increment(1);
}

/// Publishes the SES percentage in force.
pub fn cutover_percent(percent: f64) {
    gauge!(CUTOVER_SES_PERCENT).set(percent);
}

/// Counts `n` failed calls to the shared cutover store (0 makes the series visible).
pub fn cutover_store_errors(n: u64) {
    counter!(CUTOVER_STORE_ERRORS).increment(n);
}

/// Counts one failed call to the shared cutover store.
pub fn cutover_store_error() {
    cutover_store_errors(1);
}

/// Publishes the SSM parameter version in force.
pub fn cutover_store_version(version: i64) {
    gauge!(CUTOVER_STORE_VERSION).set(version as f64);
}

/// Publishes whether the health probe reaches `route`'s upstream.
pub fn upstream_up(route: &'static str, up: bool) {
    gauge!(UPSTREAM_UP, "route" => route).set(if up { 1.0 } else { 0.0 });
}

/// Publishes the DNS check of one key: `problem` is why its record does not
/// match, None when it does (the status page shows it with the time).
pub fn dkim_dns(domain: &str, selector: &str, problem: Option<&str>) {
    gauge!(DKIM_DNS_CONSISTENT, "domain" => domain.to_string(), "selector" => selector.to_string())
        .set(if problem.is_none() { 1.0 } else { 0.0 });
    dkim_checks::record(domain, selector, problem);
}

/// One DKIM key's state, as [`dkim_key`] publishes it.
pub struct DkimKeyState {
    /// It signs its domain's mail now.
    pub active: bool,
    /// It is newer than the signing key and waits for its record.
    pub pending: bool,
    /// Its age in seconds.
    pub age: f64,
    /// Consecutive matching DNS checks.
    pub confirmations: u32,
}

/// Publishes one DKIM key's state.
pub fn dkim_key(domain: &str, selector: &str, state: DkimKeyState) {
    let labels = [
        ("domain", domain.to_string()),
        ("selector", selector.to_string()),
    ];
    let flag = |on: bool| if on { 1.0 } else { 0.0 };
    gauge!(DKIM_KEY_ACTIVE, &labels).set(flag(state.active));
    gauge!(DKIM_KEY_PENDING, &labels).set(flag(state.pending));
    gauge!(DKIM_KEY_AGE, &labels).set(state.age);
    gauge!(DKIM_KEY_CONFIRMATIONS, &labels).set(f64::from(state.confirmations));
}

/// Publishes `max-key-age - rotation-notice`.
pub fn dkim_key_notice_age(seconds: f64) {
    gauge!(DKIM_KEY_NOTICE_AGE).set(seconds);
}

mod describe;
mod dkim_checks;
mod finished;
mod window;

pub use describe::describe;
pub use dkim_checks::{DnsCheck, dkim_dns_check};
pub use finished::{
    Finished, KEPT, LastNotDelivered, NotDelivered, error_code, finished, last_not_delivered,
};
pub use window::{ErrorCount, Latency, OTHER_CODE, RecentWindow, RouteTotals, recent};

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn render_has_help_and_explicit_buckets() {
        install();
        histogram!(DELIVERY_DURATION, "route" => "ses").record(0.02);
        let text = render();
        assert!(
            text.contains("# HELP ses_relay_delivery_duration_seconds"),
            "{text}"
        );
        assert!(
            text.contains("ses_relay_delivery_duration_seconds_bucket{route=\"ses\",le=\"0.025\"}"),
            "{text}"
        );
        assert!(text.contains("ses_relay_build_info{version="), "{text}");
        let build_info = format!(
            "commit=\"{}\",build_date=\"{}\"",
            crate::daemon::build_info::COMMIT,
            crate::daemon::build_info::BUILD_DATE
        );
        assert!(text.contains(&build_info), "{text}");
        for name in [
            "process_resident_memory_bytes",
            "process_cpu_seconds_total",
            "process_open_fds",
            "process_start_time_seconds",
        ] {
            assert!(
                text.contains(&format!("\n{name} ")),
                "{name} missing: {text}"
            );
        }
    }
}

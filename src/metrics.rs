//! Metric names and the helpers that record them (the `metrics` facade; the
//! Prometheus exporter is installed by whoever serves `/metrics`). Without a
//! recorder installed they cost next to nothing.

use metrics::{counter, gauge, histogram};

/// Connections by outcome: `accepted`, `denied` (not an allowed client),
/// `overloaded` (connection cap), `tls_failed` (handshake failed).
pub const SMTP_CONNECTIONS: &str = "ses_relay_smtp_connections_total";
/// Sessions open now.
pub const SMTP_SESSIONS: &str = "ses_relay_smtp_sessions";
/// Replies sent, by code class (`2xx`, `4xx`, `5xx`) and command.
pub const SMTP_REPLIES: &str = "ses_relay_smtp_replies_total";
/// Transactions by `route` and `result` (`delivered`, `deferred`, `rejected`).
pub const TRANSACTIONS: &str = "ses_relay_transactions_total";
/// Recipients by `route` and `result`.
pub const RECIPIENTS: &str = "ses_relay_recipients_total";
/// Final message size by `route`.
pub const MESSAGE_SIZE: &str = "ses_relay_message_size_bytes";
/// Time spent upstream by `route`.
pub const DELIVERY_DURATION: &str = "ses_relay_delivery_duration_seconds";
/// End of DATA to final reply, by `route`.
pub const TRANSACTION_DURATION: &str = "ses_relay_transaction_duration_seconds";
/// Signatures made, by `domain` and `selector`.
pub const DKIM_SIGNATURES: &str = "ses_relay_dkim_signatures_total";
/// Time one signature took.
pub const DKIM_SIGN_DURATION: &str = "ses_relay_dkim_sign_duration_seconds";
/// SES failures by SES `error` code.
pub const SES_ERRORS: &str = "ses_relay_ses_errors_total";

/// Describes every metric (help texts for the exporter).
pub fn describe() {
    use metrics::{describe_counter, describe_gauge, describe_histogram};
    describe_counter!(SMTP_CONNECTIONS, "SMTP connections by outcome");
    describe_gauge!(SMTP_SESSIONS, "SMTP sessions open");
    describe_counter!(SMTP_REPLIES, "SMTP replies sent by class and command");
    describe_counter!(TRANSACTIONS, "Transactions by route and result");
    describe_counter!(RECIPIENTS, "Recipients by route and result");
    describe_histogram!(
        MESSAGE_SIZE,
        metrics::Unit::Bytes,
        "Message size sent upstream"
    );
    describe_histogram!(
        DELIVERY_DURATION,
        metrics::Unit::Seconds,
        "Time spent upstream"
    );
    describe_histogram!(
        TRANSACTION_DURATION,
        metrics::Unit::Seconds,
        "End of DATA to final reply"
    );
    describe_counter!(DKIM_SIGNATURES, "DKIM signatures made");
    describe_histogram!(
        DKIM_SIGN_DURATION,
        metrics::Unit::Seconds,
        "Time to make one DKIM signature"
    );
    describe_counter!(SES_ERRORS, "SES API failures by error code");
}

/// Counts a connection outcome.
pub fn connection(result: &'static str) {
    counter!(SMTP_CONNECTIONS, "result" => result).increment(1);
}

/// Tracks the open-session gauge.
pub fn sessions(delta: f64) {
    gauge!(SMTP_SESSIONS).increment(delta);
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
    route: &'static str,
    result: &'static str,
    recipients: usize,
    size: usize,
    upstream: f64,
    total: f64,
) {
    counter!(TRANSACTIONS, "route" => route, "result" => result).increment(1);
    counter!(RECIPIENTS, "route" => route, "result" => result).increment(recipients as u64);
    histogram!(MESSAGE_SIZE, "route" => route).record(size as f64);
    histogram!(DELIVERY_DURATION, "route" => route).record(upstream);
    histogram!(TRANSACTION_DURATION, "route" => route).record(total);
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

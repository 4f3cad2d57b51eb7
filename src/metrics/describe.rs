//! Every metric's help text, and the series registered at 0 before their
//! first event (so dashboards and alerts see them from the start).

use metrics::{counter, gauge, histogram};

use super::*;

/// Describes every metric (help texts for the exporter).
pub fn describe() {
    use metrics::{describe_counter, describe_gauge, describe_histogram};
    describe_counter!(SMTP_CONNECTIONS, "SMTP connections by outcome");
    describe_counter!(SMTP_TLS_FAILURES, "TLS handshakes that failed, by mode");
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
    describe_counter!(LEGACY_ERRORS, "Legacy relay failures by kind");
    describe_gauge!(
        CUTOVER_SES_PERCENT,
        "Percentage of new transactions routed to SES"
    );
    describe_gauge!(
        DKIM_DNS_CONSISTENT,
        "1 if the DKIM DNS record matches the private key"
    );
    describe_gauge!(
        DATA_MEMORY,
        metrics::Unit::Bytes,
        "Message data held by all sessions"
    );
    describe_gauge!(BUILD_INFO, "Build information");
    describe_histogram!(
        DELIVERY_DELAY,
        metrics::Unit::Seconds,
        "Oldest Received date to upstream acceptance"
    );
    describe_counter!(GUARD_TRIPS, "Rollback guard trips by condition");
    describe_gauge!(GUARD_TRIPPED, "1 while the rollback guard is tripped");
    describe_counter!(
        SES_EVENTS,
        "SES events read from the feedback queue by type"
    );
    describe_counter!(
        SES_EVENTS_IGNORED,
        "Feedback queue messages not counted nor judged, by reason"
    );
    describe_counter!(
        CUTOVER_STORE_ERRORS,
        "Failed reads and writes of the shared cutover store (SSM)"
    );
    describe_gauge!(
        CUTOVER_STORE_VERSION,
        "SSM parameter version of the cutover value in force"
    );
    describe_gauge!(
        UPSTREAM_UP,
        "1 while the health probe reaches the route's upstream"
    );
    describe_gauge!(
        DKIM_KEY_ACTIVE,
        "1 for the key that signs its domain's mail now"
    );
    describe_gauge!(
        DKIM_KEY_AGE,
        metrics::Unit::Seconds,
        "Age of the DKIM key (created, else its file's mtime)"
    );
    describe_gauge!(
        DKIM_KEY_CONFIRMATIONS,
        "Consecutive DNS checks whose record matched the key"
    );
    describe_gauge!(
        DKIM_KEY_PENDING,
        "1 for a newer key that does not sign yet (record not confirmed)"
    );
    describe_gauge!(
        DKIM_KEY_NOTICE_AGE,
        metrics::Unit::Seconds,
        "dkim.max-key-age minus dkim.rotation-notice"
    );
}

/// The guard's series at 0, so dashboards and alerts see them before the first trip.
pub(super) fn register_guard() {
    for condition in GUARD_CONDITIONS {
        counter!(GUARD_TRIPS, "condition" => condition).absolute(0);
    }
    gauge!(GUARD_TRIPPED).set(0.0);
    for kind in ["send", "bounce", "complaint"] {
        counter!(SES_EVENTS, "type" => kind).absolute(0);
    }
    for reason in SES_EVENTS_IGNORED_REASONS {
        counter!(SES_EVENTS_IGNORED, "reason" => reason).absolute(0);
    }
    for route in ["ses", "legacy"] {
        let _ = histogram!(DELIVERY_DELAY, "route" => route);
    }
}

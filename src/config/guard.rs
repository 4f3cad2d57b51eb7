//! `[guard]` (the rollback guard's thresholds) and `[feedback]` (where SES's
//! events are read from), with their validation.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::{Config, HumanDuration};

/// `[guard]`: the migration plan's rollback conditions, judged by the relay itself.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case", default)]
pub struct GuardConfig {
    /// Judge the conditions and move the SES share to `fallback-percent` when one holds.
    pub enabled: bool,
    /// The sliding window every condition is judged over.
    pub window: HumanDuration,
    /// Below this many SES-route outcomes (or SES sends, for the event ratios)
    /// in the window, no condition is judged: a handful of failures is not a trend.
    pub min_transactions: u64,
    /// Share of SES-route upstream outcomes that were not acceptance (the plan's "success < 95 %").
    pub max_failure_ratio: f64,
    /// The p95 of Postfix-first-took-it to SES-accepted (the plan's "delay > 5 min").
    pub max_delay: HumanDuration,
    /// Permanent bounces over sends, from SES events (the plan's "bounce > 5 %").
    pub max_bounce_ratio: f64,
    /// Complaints over sends, from SES events (the plan's complaint page, 0.1 %).
    pub max_complaint_ratio: f64,
    /// The SES share after a trip (never raised: the lower of this and the share in force).
    pub fallback_percent: f64,
    /// Per-message refusals by SES (`MessageRejected` and the like) over
    /// SES-route outcomes; not failures of SES, judged on their own.
    pub max_reject_ratio: f64,
    /// The reject ratio holds only when the refused messages came from at
    /// least this many distinct clients (the real client behind PROXY): one
    /// broken Postfix cannot roll back the fleet.
    pub min_reject_clients: u64,
}

impl Default for GuardConfig {
    fn default() -> Self {
        GuardConfig {
            enabled: false,
            window: HumanDuration(Duration::from_secs(300)),
            min_transactions: 200,
            max_failure_ratio: 0.05,
            max_delay: HumanDuration(Duration::from_secs(300)),
            max_bounce_ratio: 0.05,
            max_complaint_ratio: 0.001,
            fallback_percent: 0.0,
            max_reject_ratio: 0.05,
            min_reject_clients: 2,
        }
    }
}

/// `[feedback]`: the SQS queue the configuration set's event destination (SNS → SQS) fills.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case", default)]
pub struct FeedbackConfig {
    /// Queue URL; empty = no SES events read (bounce and complaint ratios are not judged).
    pub sqs_queue_url: String,
    /// Override of the SQS endpoint (tests, VPC endpoints); empty = AWS.
    pub endpoint_url: String,
    /// How long each receive waits for messages (long polling, at most 20 s),
    /// and the pause after a receive that failed.
    pub poll_interval: HumanDuration,
    /// When set, only events whose `mail.sendingAccountId` is this AWS
    /// account are counted; others are ignored (`reason="account"`).
    pub account_id: String,
    /// When set, only SNS notifications whose `TopicArn` is this topic are
    /// counted; others, and raw (unwrapped) deliveries, are ignored (`reason="topic"`).
    pub topic_arn: String,
}

impl Default for FeedbackConfig {
    fn default() -> Self {
        FeedbackConfig {
            sqs_queue_url: String::new(),
            endpoint_url: String::new(),
            poll_interval: HumanDuration(Duration::from_secs(5)),
            account_id: String::new(),
            topic_arn: String::new(),
        }
    }
}

/// The rejected clients the guard tells apart are kept in a list this long at most.
const MAX_REJECT_CLIENTS: u64 = 1000;

fn is_http_url(url: &str) -> bool {
    url.starts_with("http://") || url.starts_with("https://")
}

impl Config {
    /// `[guard]` and `[feedback]`.
    pub(super) fn validate_guard(&self, bad: &mut impl FnMut(&str, String)) {
        let guard = &self.guard;
        if guard.window.0.is_zero() {
            bad("guard.window", "must be longer than zero".into());
        }
        if guard.max_delay.0.is_zero() {
            bad("guard.max-delay", "must be longer than zero".into());
        }
        if guard.min_transactions == 0 {
            bad(
                "guard.min-transactions",
                "must be at least 1: one failure must not roll back a migration".into(),
            );
        }
        for (key, value) in [
            ("guard.max-failure-ratio", guard.max_failure_ratio),
            ("guard.max-bounce-ratio", guard.max_bounce_ratio),
            ("guard.max-complaint-ratio", guard.max_complaint_ratio),
            ("guard.max-reject-ratio", guard.max_reject_ratio),
        ] {
            if !value.is_finite() || !(0.0..=1.0).contains(&value) {
                bad(
                    key,
                    format!("{value} is outside 0..=1 (a ratio, 0.05 = 5 %)"),
                );
            }
        }
        if !(1..=MAX_REJECT_CLIENTS).contains(&guard.min_reject_clients) {
            bad(
                "guard.min-reject-clients",
                format!(
                    "{} is outside 1..={MAX_REJECT_CLIENTS} (distinct clients whose messages SES refused)",
                    guard.min_reject_clients
                ),
            );
        }
        let fallback = guard.fallback_percent;
        if !fallback.is_finite() || !(0.0..=100.0).contains(&fallback) {
            bad(
                "guard.fallback-percent",
                format!("{fallback} is outside 0..=100"),
            );
        }
        let feedback = &self.feedback;
        if !(feedback.sqs_queue_url.is_empty() || is_http_url(&feedback.sqs_queue_url)) {
            bad(
                "feedback.sqs-queue-url",
                format!("`{}` is not an http(s) URL", feedback.sqs_queue_url),
            );
        }
        if !(feedback.endpoint_url.is_empty() || is_http_url(&feedback.endpoint_url)) {
            bad(
                "feedback.endpoint-url",
                format!("`{}` is not an http(s) URL", feedback.endpoint_url),
            );
        }
        if feedback.poll_interval.0.is_zero() {
            bad("feedback.poll-interval", "must be longer than zero".into());
        }
        let account = &feedback.account_id;
        if !(account.is_empty()
            || account.len() == 12 && account.bytes().all(|b| b.is_ascii_digit()))
        {
            bad(
                "feedback.account-id",
                format!("`{account}` is not an AWS account id (12 digits)"),
            );
        }
        let topic = &feedback.topic_arn;
        if !(topic.is_empty() || topic.starts_with("arn:") && topic.contains(":sns:")) {
            bad(
                "feedback.topic-arn",
                format!("`{topic}` is not an SNS topic ARN (arn:aws:sns:region:account:name)"),
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::ConfigError;

    #[test]
    fn issue_example_parses_and_bad_values_are_named() {
        let text = r#"
[guard]
enabled = true
window = "5m"
min-transactions = 200
max-failure-ratio = 0.05
max-delay = "5m"
max-bounce-ratio = 0.05
max-complaint-ratio = 0.001
fallback-percent = 0
max-reject-ratio = 0.05
min-reject-clients = 2

[feedback]
sqs-queue-url = "https://sqs.ap-northeast-1.amazonaws.com/123456789012/ses-events"
endpoint-url = ""
poll-interval = "5s"
account-id = "123456789012"
topic-arn = "arn:aws:sns:ap-northeast-1:123456789012:ses-events"
"#;
        let config = Config::load_str(text, Vec::new()).unwrap();
        assert!(config.guard.enabled);
        assert_eq!(config.guard.window.0, Duration::from_secs(300));
        assert_eq!(config.feedback.poll_interval.0, Duration::from_secs(5));
        let mut problems = Vec::new();
        let mut broken = config.clone();
        broken.guard.max_failure_ratio = 5.0;
        broken.guard.min_transactions = 0;
        broken.guard.fallback_percent = 101.0;
        broken.feedback.sqs_queue_url = "ses-events".into();
        broken.guard.max_reject_ratio = -0.1;
        broken.guard.min_reject_clients = 0;
        broken.feedback.account_id = "12345".into();
        broken.feedback.topic_arn = "ses-events".into();
        broken.validate_guard(&mut |key: &str, _| problems.push(key.to_string()));
        assert_eq!(
            problems,
            [
                "guard.min-transactions",
                "guard.max-failure-ratio",
                "guard.max-reject-ratio",
                "guard.min-reject-clients",
                "guard.fallback-percent",
                "feedback.sqs-queue-url",
                "feedback.account-id",
                "feedback.topic-arn"
            ]
        );
        let err = Config::load_str("[guard]\nmax-ratio = 1\n", Vec::new()).unwrap_err();
        // Structural problems come back all at once, each with its key.
        assert!(
            matches!(err, ConfigError::Invalid(ref p) if p.iter().any(|p| p.key == "guard.max-ratio")),
            "{err}"
        );
    }
}

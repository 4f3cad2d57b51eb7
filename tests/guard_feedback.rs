//! The rollback guard fed by SES events: 100 Send and 10 Bounce events
//! (SNS-wrapped and raw) plus a poison message in moto's SQS queue trip the
//! bounce ratio and are all deleted; preflight's queue check. Events of
//! another configuration set, account or SNS topic are ignored and counted by
//! reason, and an SNS message delivered twice counts once. Skips with the
//! reason printed when moto is missing, unless `SES_RELAY_REQUIRE_PEERS=1`.

mod common;

use std::time::{Duration, Instant};

use aws_sdk_sesv2::config::{Credentials, SharedCredentialsProvider};
use common::admin::cutover;
use common::guard::guard_config;
use common::metrics::Metrics;
use common::peers::{Moto, moto_missing, run_or_skip};
use common::smtp_sink::SmtpSink;
use common::wait::{ok_if, wait_until_async};
use common::{RunningRelay, TempDir};
use ses_relay::config::HumanDuration;

fn credentials() -> SharedCredentialsProvider {
    SharedCredentialsProvider::new(Credentials::new("test", "test", None, None, "test"))
}

/// The relay's configuration set (tests/common's test_config), account and topic.
const CONFIGURATION_SET: &str = "ses-migration-production-config-set";
const ACCOUNT: &str = "123456789012";
const TOPIC: &str = "arn:aws:sns:ap-northeast-1:123456789012:ses-events";

/// An SES event of `kind` for message `n`, as `configuration_set`'s
/// destination publishes it for `account`.
fn ses_event(kind: &str, n: usize, configuration_set: &str, account: &str) -> String {
    let mut event = serde_json::json!({
        "eventType": kind,
        "mail": {
            "messageId": format!("0106-{n}"),
            "source": "news@goo.ne.jp",
            "sendingAccountId": account,
            "destination": ["gone@example.net"],
            "tags": { "ses:configuration-set": [configuration_set] },
        },
    });
    if kind == "Bounce" {
        event["bounce"] = serde_json::json!({
            "bounceType": "Permanent",
            "bounceSubType": "General",
            "bouncedRecipients": [{ "emailAddress": "gone@example.net" }],
        });
    }
    event.to_string()
}

/// As SNS delivers `message` from `topic` (without raw message delivery).
fn sns(message: &str, id: &str, topic: &str) -> String {
    serde_json::json!({
        "Type": "Notification",
        "MessageId": id,
        "TopicArn": topic,
        "Message": message,
    })
    .to_string()
}

/// An event of the relay's configuration set, SNS-wrapped for even `n`, raw for odd.
fn event(kind: &str, n: usize) -> String {
    let raw = ses_event(kind, n, CONFIGURATION_SET, ACCOUNT);
    if n.is_multiple_of(2) {
        sns(&raw, &format!("sns-{kind}-{n}"), TOPIC)
    } else {
        raw
    }
}

/// Sends `bodies` to the queue, ten at a time.
async fn send_all(sqs: &aws_sdk_sqs::Client, queue_url: &str, bodies: &[String]) {
    for (b, chunk) in bodies.chunks(10).enumerate() {
        let entries = chunk
            .iter()
            .enumerate()
            .map(|(i, body)| {
                aws_sdk_sqs::types::SendMessageBatchRequestEntry::builder()
                    .id(format!("{b}-{i}"))
                    .message_body(body)
                    .build()
                    .unwrap()
            })
            .collect();
        sqs.send_message_batch()
            .queue_url(queue_url)
            .set_entries(Some(entries))
            .send()
            .await
            .expect("moto: send batch");
    }
}

/// Waits until every message of the queue was received and deleted.
async fn drained(sqs: &aws_sdk_sqs::Client, queue_url: &str, deadline: Instant) {
    use aws_sdk_sqs::types::QueueAttributeName as A;
    let within = deadline.saturating_duration_since(Instant::now());
    wait_until_async(within, || async {
        let attributes = sqs
            .get_queue_attributes()
            .queue_url(queue_url)
            .attribute_names(A::All)
            .send()
            .await
            .unwrap();
        let attributes = attributes.attributes().unwrap();
        let count = |name| {
            attributes
                .get(&name)
                .and_then(|v| v.parse::<u64>().ok())
                .unwrap_or(u64::MAX)
        };
        ok_if(
            count(A::ApproximateNumberOfMessages) == 0
                && count(A::ApproximateNumberOfMessagesNotVisible) == 0,
            format!("queue not drained: {attributes:?}"),
        )
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(
    not(has_moto),
    ignore = "needs moto (SES emulator): run tests/peers/install.sh"
)]
async fn bounce_events_from_sqs_trip_the_bounce_ratio_and_every_message_is_deleted() {
    if !run_or_skip(
        "bounce_events_from_sqs_trip_the_bounce_ratio_and_every_message_is_deleted",
        moto_missing(),
    ) {
        return;
    }
    let moto = tokio::task::spawn_blocking(Moto::start).await.unwrap();
    let sink = SmtpSink::start().await;
    let dir = TempDir::new("guard-bounce");
    let mut config = guard_config(&moto.endpoint(), &sink, &dir, 50);
    config.ses.region = "ap-northeast-1".into();
    config.feedback.endpoint_url = moto.endpoint();
    let sqs = ses_relay::control::feedback::client(&config, Some(credentials())).await;
    let queue = sqs
        .create_queue()
        .queue_name("ses-events")
        .send()
        .await
        .expect("moto: create queue");
    let queue_url = queue.queue_url().unwrap().to_string();
    config.feedback.sqs_queue_url = queue_url.clone();
    config.feedback.poll_interval = HumanDuration(Duration::from_secs(1));

    // preflight: the queue answers; a queue that does not exist is a FAIL.
    let resolver = ses_relay::tools::dns::StaticResolver::default();
    let findings = ses_relay::tools::preflight::run(&config, &resolver, Some(credentials())).await;
    let queue_line = findings
        .iter()
        .find(|f| f.check.starts_with("feedback queue"))
        .unwrap();
    assert_eq!(
        queue_line.level,
        ses_relay::tools::preflight::Level::Pass,
        "{queue_line}"
    );
    let mut missing = config.clone();
    missing.feedback.sqs_queue_url = format!("{}/123456789012/nope", moto.endpoint());
    missing.legacy = None;
    let findings = ses_relay::tools::preflight::run(&missing, &resolver, Some(credentials())).await;
    let find = |check: &str| {
        findings
            .iter()
            .find(|f| f.check == check || f.check.starts_with(&format!("{check} ")))
            .unwrap_or_else(|| panic!("no {check} in {findings:#?}"))
            .clone()
    };
    assert_eq!(
        find("feedback queue").level,
        ses_relay::tools::preflight::Level::Fail
    );
    let guard = find("guard");
    assert!(guard.detail.contains("can only alert"), "{guard}");

    let relay = RunningRelay::start(config).await;
    let before = Metrics::of(&relay).await;
    // 100 sends, 10 permanent bounces, one poison message.
    let mut bodies: Vec<String> = (0..100).map(|n| event("Send", n)).collect();
    bodies.extend((0..10).map(|n| event("Bounce", n)));
    bodies.push("{not an SES event".into());
    send_all(&sqs, &queue_url, &bodies).await;
    let deadline = Instant::now() + Duration::from_secs(60);
    let status = wait_until_async(Duration::from_secs(60), || async {
        let status = cutover(&relay).await;
        match status["source"] == "guard" {
            true => Ok(status),
            false => Err(format!("no trip: {status}")),
        }
    })
    .await;
    assert_eq!(status["ses_percent"], 0.0, "{status}");
    let reason = status["reason"].as_str().unwrap();
    assert!(reason.starts_with("guard: bounce ratio "), "{reason}");
    assert!(reason.contains("> 0.05 over 1m"), "{reason}");
    // Every message is counted once and deleted, the poison one included.
    drained(&sqs, &queue_url, deadline).await;
    let figures = cutover(&relay).await["guard"].clone();
    assert_eq!(
        (figures["sends"].clone(), figures["bounces"].clone()),
        (100.into(), 10.into()),
        "{figures}"
    );
    let after = Metrics::of(&relay).await;
    let events = "ses_relay_ses_events_total";
    assert_eq!(
        after.delta(&before, events, &[("type", "malformed")]),
        1.0,
        "{}",
        after.text()
    );
    assert_eq!(after.delta(&before, events, &[("type", "bounce")]), 10.0);
    assert!(relay.stop().await);
    drop(moto);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_of_another_configuration_set_account_or_topic_are_ignored_by_reason_and_a_redelivery_counts_once()
 {
    if !run_or_skip(
        "events_of_another_configuration_set_account_or_topic_are_ignored_by_reason_and_a_redelivery_counts_once",
        moto_missing(),
    ) {
        return;
    }
    let moto = tokio::task::spawn_blocking(Moto::start).await.unwrap();
    let sink = SmtpSink::start().await;
    let dir = TempDir::new("guard-scope");
    // Judged once 30 sends are in: a single foreign bounce counted is over 0.05.
    let mut config = guard_config(&moto.endpoint(), &sink, &dir, 30);
    config.ses.region = "ap-northeast-1".into();
    config.feedback.endpoint_url = moto.endpoint();
    config.feedback.account_id = ACCOUNT.into();
    config.feedback.topic_arn = TOPIC.into();
    config.feedback.poll_interval = HumanDuration(Duration::from_secs(1));
    let sqs = ses_relay::control::feedback::client(&config, Some(credentials())).await;
    let queue = sqs
        .create_queue()
        .queue_name("ses-events-scope")
        .send()
        .await
        .expect("moto: create queue");
    let queue_url = queue.queue_url().unwrap().to_string();
    config.feedback.sqs_queue_url = queue_url.clone();
    let relay = RunningRelay::start(config).await;
    let before = Metrics::of(&relay).await;

    // Ours: 30 sends, the first of which SQS delivers twice.
    let mut bodies: Vec<String> = (0..30)
        .map(|n| {
            let send = ses_event("Send", n, CONFIGURATION_SET, ACCOUNT);
            sns(&send, &format!("sns-send-{n}"), TOPIC)
        })
        .collect();
    bodies.push(bodies[0].clone());
    // Forged or foreign: enough bounces to trip the bounce ratio many times over.
    for n in 0..3 {
        bodies.push(sns(
            &ses_event("Bounce", 100 + n, "marketing-config-set", ACCOUNT),
            &format!("sns-other-set-{n}"),
            TOPIC,
        ));
        bodies.push(sns(
            &ses_event("Bounce", 200 + n, CONFIGURATION_SET, "210987654321"),
            &format!("sns-other-account-{n}"),
            TOPIC,
        ));
        bodies.push(sns(
            &ses_event("Bounce", 300 + n, CONFIGURATION_SET, ACCOUNT),
            &format!("sns-other-topic-{n}"),
            "arn:aws:sns:ap-northeast-1:123456789012:forged",
        ));
    }
    // A raw delivery cannot show its topic: with topic-arn set, it is not ours.
    bodies.push(ses_event("Bounce", 400, CONFIGURATION_SET, ACCOUNT));
    send_all(&sqs, &queue_url, &bodies).await;
    let deadline = Instant::now() + Duration::from_secs(60);
    drained(&sqs, &queue_url, deadline).await;

    let status = cutover(&relay).await;
    let figures = &status["guard"];
    assert_eq!(
        (figures["sends"].clone(), figures["bounces"].clone()),
        (30.into(), 0.into()),
        "{status}"
    );
    assert_eq!(status["ses_percent"], 100.0, "{status}");
    assert_eq!(status["guard"]["state"], "armed", "{status}");
    let after = Metrics::of(&relay).await;
    for (reason, count) in [
        ("configuration-set", 3.0),
        ("account", 3.0),
        ("topic", 4.0),
        ("duplicate", 1.0),
    ] {
        let ignored = after.delta(
            &before,
            "ses_relay_ses_events_ignored_total",
            &[("reason", reason)],
        );
        assert_eq!(ignored, count, "{reason}\n{}", after.text());
    }
    assert!(relay.stop().await);
    drop(moto);
}

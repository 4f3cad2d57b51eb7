//! The rollback guard fed by SES events: 100 Send and 10 Bounce events
//! (SNS-wrapped and raw) plus a poison message in moto's SQS queue trip the
//! bounce ratio and are all deleted; preflight's queue check. Skips with the
//! reason printed when moto is missing, unless `SES_RELAY_REQUIRE_PEERS=1`.

mod common;

use std::time::{Duration, Instant};

use aws_sdk_sesv2::config::{Credentials, SharedCredentialsProvider};
use common::guard::{cutover, guard_config, metric};
use common::peers::{Moto, moto_missing, run_or_skip};
use common::smtp_sink::SmtpSink;
use common::{RunningRelay, TempDir};
use ses_relay::config::HumanDuration;

fn credentials() -> SharedCredentialsProvider {
    SharedCredentialsProvider::new(Credentials::new("test", "test", None, None, "test"))
}

/// An SES event as the configuration set's destination publishes it.
fn event(kind: &str, n: usize) -> String {
    let mut event = serde_json::json!({
        "eventType": kind,
        "mail": { "messageId": format!("0106-{n}"), "source": "news@goo.ne.jp" },
    });
    if kind == "Bounce" {
        event["bounce"] = serde_json::json!({
            "bounceType": "Permanent",
            "bounceSubType": "General",
            "bouncedRecipients": [{ "emailAddress": "gone@example.net" }],
        });
    }
    let raw = event.to_string();
    if n.is_multiple_of(2) {
        // SNS-wrapped, as without raw message delivery.
        serde_json::json!({
            "Type": "Notification",
            "MessageId": format!("sns-{n}"),
            "TopicArn": "arn:aws:sns:ap-northeast-1:123456789012:ses-events",
            "Message": raw,
        })
        .to_string()
    } else {
        raw
    }
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
    let sqs = ses_relay::feedback::client(&config, Some(credentials())).await;
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
    let resolver = ses_relay::dns::StaticResolver::default();
    let findings = ses_relay::preflight::run(&config, &resolver, Some(credentials())).await;
    let queue_line = findings
        .iter()
        .find(|f| f.check.starts_with("feedback queue"))
        .unwrap();
    assert_eq!(
        queue_line.level,
        ses_relay::preflight::Level::Pass,
        "{queue_line}"
    );
    let mut missing = config.clone();
    missing.feedback.sqs_queue_url = format!("{}/123456789012/nope", moto.endpoint());
    missing.legacy = None;
    let findings = ses_relay::preflight::run(&missing, &resolver, Some(credentials())).await;
    let find = |check: &str| {
        findings
            .iter()
            .find(|f| f.check == check || f.check.starts_with(&format!("{check} ")))
            .unwrap_or_else(|| panic!("no {check} in {findings:#?}"))
            .clone()
    };
    assert_eq!(
        find("feedback queue").level,
        ses_relay::preflight::Level::Fail
    );
    let guard = find("guard");
    assert!(guard.detail.contains("can only alert"), "{guard}");

    let relay = RunningRelay::start(config).await;
    // 100 sends, 10 permanent bounces, one poison message.
    let mut bodies: Vec<String> = (0..100).map(|n| event("Send", n)).collect();
    bodies.extend((0..10).map(|n| event("Bounce", n)));
    bodies.push("{not an SES event".into());
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
            .queue_url(&queue_url)
            .set_entries(Some(entries))
            .send()
            .await
            .expect("moto: send batch");
    }
    let deadline = Instant::now() + Duration::from_secs(60);
    let status = loop {
        let status = cutover(&relay).await;
        if status["source"] == "guard" {
            break status;
        }
        assert!(Instant::now() < deadline, "no trip: {status}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert_eq!(status["ses_percent"], 0.0, "{status}");
    let reason = status["reason"].as_str().unwrap();
    assert!(reason.starts_with("guard: bounce ratio "), "{reason}");
    assert!(reason.contains("> 0.05 over 1m"), "{reason}");
    // Every message is counted once and deleted, the poison one included.
    loop {
        let attributes = sqs
            .get_queue_attributes()
            .queue_url(&queue_url)
            .attribute_names(aws_sdk_sqs::types::QueueAttributeName::All)
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
        use aws_sdk_sqs::types::QueueAttributeName as A;
        if count(A::ApproximateNumberOfMessages) == 0
            && count(A::ApproximateNumberOfMessagesNotVisible) == 0
        {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "queue not drained: {attributes:?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let figures = cutover(&relay).await["guard"].clone();
    assert_eq!(
        (figures["sends"].clone(), figures["bounces"].clone()),
        (100.into(), 10.into()),
        "{figures}"
    );
    let metrics = ses_relay::metrics::render();
    assert_eq!(
        metric(&metrics, "ses_relay_ses_events_total{type=\"malformed\"}"),
        1.0,
        "{metrics}"
    );
    assert_eq!(
        metric(&metrics, "ses_relay_ses_events_total{type=\"bounce\"}"),
        10.0
    );
    assert!(relay.stop().await);
    drop(moto);
}

//! A client's own mistakes stay out of the SES success ratio: messages
//! refused after DATA for the client's faults (bare LF, not one From) are
//! counted `refused`, never `delivered`, `deferred` or `rejected`. From the
//! adversarial review of the SMTP edge. A test binary of its own: the counters
//! are process-wide, so no other test's traffic moves them between the two
//! scrapes.

mod common;

use std::time::Duration;

use common::client::SmtpClient;
use common::metrics::Metrics;
use common::ses_fake::SesFake;
use common::{RunningRelay, test_config};

/// The refusals after DATA (`550 5.5.2` bare LF, `550 5.6.0`
/// not one From) are the client's own mistakes: they must not grow the
/// `delivered`, `deferred` or `rejected` series that
/// `route:ses_relay_success_ratio:rate5m` (etc/prometheus/ses-relay.rules.yml)
/// divides by, or one client writing bare LFs fires the rollback alert.
/// (Found failing during the review on a09f818..b2020a5; main's 4df1da7,
/// `result="refused"`, fixed it.)
#[tokio::test]
async fn client_refusals_after_data_do_not_move_the_ses_success_ratio() {
    let ses = SesFake::start().await;
    let relay = RunningRelay::start(test_config(&ses.endpoint())).await;
    let before = Metrics::of(&relay).await;
    let mut client = SmtpClient::connect(relay.addr).await;
    let mut wire = b"EHLO client.test\r\n".to_vec();
    for message in [
        &b"From: a@goo.ne.jp\r\n\r\nbare\nLF\r\n"[..],
        b"From: a@goo.ne.jp\r\nFrom: b@goo.ne.jp\r\n\r\ntwo Froms\r\n",
        b"Subject: no From\r\n\r\nx\r\n",
    ] {
        wire.extend_from_slice(b"MAIL FROM:<a@goo.ne.jp>\r\nRCPT TO:<b@example.com>\r\nDATA\r\n");
        wire.extend_from_slice(message);
        wire.extend_from_slice(b".\r\n");
    }
    wire.extend_from_slice(b"QUIT\r\n");
    client.write(wire).await;
    let replies = client.until_closed(Duration::from_secs(20)).await;
    let replies = String::from_utf8_lossy(&replies);
    assert_eq!(replies.matches("\r\n550 5.").count(), 3, "{replies}");
    assert!(ses.requests().is_empty());
    let after = Metrics::of(&relay).await;
    let moved: Vec<&str> = ["rejected", "deferred", "delivered"]
        .into_iter()
        .filter(|result| {
            let series = [("route", "ses"), ("result", *result)];
            after.delta(&before, "ses_relay_transactions_total", &series) > 0.0
        })
        .collect();
    assert!(
        moved.is_empty(),
        "three client refusals moved the SES success ratio's series {moved:?}:\n{}",
        after.text()
    );
    let refused = [("route", "ses"), ("result", "refused")];
    assert_eq!(
        after.delta(&before, "ses_relay_transactions_total", &refused),
        3.0,
        "counted as the client's refusals"
    );
    assert!(relay.stop().await);
}

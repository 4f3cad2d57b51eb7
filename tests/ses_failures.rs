//! How SES's trouble reaches the client, end to end in one process (the
//! relay on 127.0.0.1:0, mail-send as the client, the in-process SES v2 fake):
//! throttling, a refusal, a 5xx, a connection dropped after the request, a
//! stall past the timeout, an unreachable endpoint.

mod common;

use std::time::{Duration, Instant};

use common::client::{BODY, refused_code, send};
use common::ses_fake::{Mode, SesFake};
use common::{RunningRelay, test_config};
use ses_relay::config::HumanDuration;

#[tokio::test]
async fn throttled_ses_is_a_451_after_retries() {
    let ses = SesFake::start().await;
    ses.set_mode(Mode::Throttle);
    let relay = RunningRelay::start(test_config(&ses.endpoint())).await;
    let started = Instant::now();
    let (code, esc, message) = refused_code(
        send(&relay, "a@goo.ne.jp", &["b@example.com"], BODY)
            .await
            .unwrap_err(),
    );
    assert_eq!((code, esc[0]), (451, 4), "{message}");
    assert!(message.contains("TooManyRequestsException"), "{message}");
    assert_eq!(ses.attempts(), 3, "throttling is retried twice");
    assert!(
        started.elapsed() < Duration::from_secs(15),
        "bounded by ses.timeout"
    );
    assert!(relay.stop().await);
}

#[tokio::test]
async fn rejected_by_ses_is_a_554_with_ses_words() {
    let ses = SesFake::start().await;
    ses.set_mode(Mode::Reject(
        "MessageRejected",
        "Email address is not verified.",
    ));
    let relay = RunningRelay::start(test_config(&ses.endpoint())).await;
    let (code, esc, message) = refused_code(
        send(&relay, "a@goo.ne.jp", &["b@example.com"], BODY)
            .await
            .unwrap_err(),
    );
    assert_eq!((code, esc), (554, [5, 7, 1]));
    assert!(
        message.contains("Email address is not verified."),
        "{message}"
    );
    assert_eq!(ses.attempts(), 1, "a permanent refusal is not retried");
    assert!(relay.stop().await);
}

#[tokio::test]
async fn ses_server_error_is_a_451() {
    let ses = SesFake::start().await;
    ses.set_mode(Mode::Fail);
    let relay = RunningRelay::start(test_config(&ses.endpoint())).await;
    let (code, _, _) = refused_code(
        send(&relay, "a@goo.ne.jp", &["b@example.com"], BODY)
            .await
            .unwrap_err(),
    );
    assert_eq!(code, 451);
    assert_eq!(ses.attempts(), 3, "server errors are retried twice");
    assert!(relay.stop().await);
}

#[tokio::test]
async fn a_request_ses_may_have_taken_is_not_sent_again() {
    let ses = SesFake::start().await;
    ses.set_mode(Mode::Hangup);
    let relay = RunningRelay::start(test_config(&ses.endpoint())).await;
    let (code, esc, message) = refused_code(
        send(&relay, "a@goo.ne.jp", &["b@example.com"], BODY)
            .await
            .unwrap_err(),
    );
    assert_eq!((code, esc), (451, [4, 4, 1]), "{message}");
    // The connection dropped after the request went out: SES may have the
    // message, so only Postfix's own retry may send it again.
    assert_eq!(ses.attempts(), 1);
    assert!(relay.stop().await);
}

#[tokio::test]
async fn stalled_ses_past_the_timeout_is_a_451() {
    let ses = SesFake::start().await;
    ses.set_mode(Mode::Stall(Duration::from_secs(20)));
    let mut config = test_config(&ses.endpoint());
    config.ses.timeout = HumanDuration(Duration::from_secs(1));
    let relay = RunningRelay::start(config).await;
    let started = Instant::now();
    let (code, esc, message) = refused_code(
        send(&relay, "a@goo.ne.jp", &["b@example.com"], BODY)
            .await
            .unwrap_err(),
    );
    assert_eq!((code, esc), (451, [4, 4, 1]), "{message}");
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "took {:?}",
        started.elapsed()
    );
    relay.shutdown.trigger();
}

#[tokio::test]
async fn unreachable_ses_is_a_451() {
    // A port nothing listens on.
    let refusing = common::RefusingPort::bind();
    let closed = refusing.addr;
    let relay = RunningRelay::start(test_config(&format!("http://{closed}"))).await;
    let (code, esc, message) = refused_code(
        send(&relay, "a@goo.ne.jp", &["b@example.com"], BODY)
            .await
            .unwrap_err(),
    );
    assert_eq!((code, esc), (451, [4, 4, 1]), "{message}");
    assert!(relay.stop().await);
}

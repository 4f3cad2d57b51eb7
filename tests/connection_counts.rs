//! Each connection is counted once in `ses_relay_smtp_connections_total`:
//! `accepted` when its session starts, `tls_failed` when an implicit-TLS
//! handshake fails instead; a failed STARTTLS ends a session already counted
//! `accepted` and shows only in `ses_relay_smtp_tls_failures_total{mode}`.
//! One test in its own binary: the metrics registry is process-wide.

mod common;

use std::time::Duration;

use common::client::SmtpClient;
use common::metrics::Metrics;
use common::ses_fake::SesFake;
use common::wait::wait_until_async;
use common::{RunningRelay, TestCa, test_config};
use tokio::io::AsyncWriteExt;

const CONNECTIONS: &str = "ses_relay_smtp_connections_total";
const TLS_FAILURES: &str = "ses_relay_smtp_tls_failures_total";

/// Waits until `series` with `labels` grew by `by` since `before`; the scrape then.
async fn grown(
    relay: &RunningRelay,
    before: &Metrics,
    series: &str,
    labels: &[(&str, &str)],
    by: f64,
) -> Metrics {
    wait_until_async(Duration::from_secs(10), || async {
        let now = Metrics::of(relay).await;
        let delta = now.delta(before, series, labels);
        if delta == by {
            Ok(now)
        } else {
            Err(format!("{series}{labels:?} grew by {delta}, not {by}"))
        }
    })
    .await
}

#[tokio::test]
async fn each_connection_is_counted_once_and_tls_failures_by_mode() {
    let ses = SesFake::start().await;
    let ca = TestCa::new();
    let mut config = test_config(&ses.endpoint());
    config.smtp.tls = Some(ca.tls_config());
    config.smtp.listen_tls = vec!["127.0.0.1:0".parse().unwrap()];
    let relay = RunningRelay::start(config).await;
    let accepted = [("result", "accepted")];
    let tls_failed = [("result", "tls_failed")];
    let before = Metrics::of(&relay).await;

    // Implicit TLS, and the client speaks plain text: no session, one tls_failed.
    let mut plain_to_tls = tokio::net::TcpStream::connect(relay.tls_addr.unwrap())
        .await
        .unwrap();
    plain_to_tls
        .write_all(b"EHLO not-tls.example\r\n")
        .await
        .unwrap();
    let after = grown(&relay, &before, TLS_FAILURES, &[("mode", "implicit")], 1.0).await;
    assert_eq!(after.delta(&before, CONNECTIONS, &tls_failed), 1.0);
    assert_eq!(after.delta(&before, CONNECTIONS, &accepted), 0.0);

    // STARTTLS, then garbage instead of a handshake: the session was accepted, once.
    let mut client = SmtpClient::greeted(relay.addr).await;
    client.ehlo("client.test").await;
    client.expect("STARTTLS", "220").await;
    client.write(b"this is no ClientHello\r\n\r\n").await;
    let after = grown(&relay, &before, TLS_FAILURES, &[("mode", "starttls")], 1.0).await;
    assert_eq!(after.delta(&before, CONNECTIONS, &accepted), 1.0);
    assert_eq!(
        after.delta(&before, CONNECTIONS, &tls_failed),
        1.0,
        "a failed STARTTLS is no second outcome of its connection"
    );

    // A good implicit-TLS connection is accepted once, after its handshake.
    let tcp = tokio::net::TcpStream::connect(relay.tls_addr.unwrap())
        .await
        .unwrap();
    let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
    let _tls = ca.connector().connect(name, tcp).await.unwrap();
    let after = grown(&relay, &before, CONNECTIONS, &accepted, 2.0).await;
    assert_eq!(after.delta(&before, CONNECTIONS, &tls_failed), 1.0);
    drop(plain_to_tls);
    assert!(relay.stop().await);
}

//! A fleet of two relays sharing one cutover through a real SSM emulator
//! (moto), with moto's SES v2 as the SES route and an SMTP sink as the
//! legacy relay: a change through either relay's API is in force on the other
//! within `refresh-interval`; a restarted relay starts from the shared value;
//! SSM stopped mid-run leaves routing on the last value, and a relay started
//! while SSM is down starts from its cached copy, not from its config.
//!
//! Skips with the reason printed when moto is missing, unless
//! `SES_RELAY_REQUIRE_PEERS=1` (as `.ci/run` sets).

mod common;

use std::time::Duration;

use common::admin::{cutover, get};
use common::client::SmtpClient;
use common::fleet::{
    PARAMETER, REFRESH, fleet_config, prepare_ses, route_of, send, set, until_percent,
};
use common::metrics::Metrics;
use common::peers::{Moto, moto_missing, run_or_skip};
use common::smtp_sink::SmtpSink;
use common::wait::{ok_if, wait_until_async};
use common::{RunningRelay, TempDir, test_config};
use ses_relay::config::HumanDuration;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(
    not(has_moto),
    ignore = "needs moto (SES emulator): run tests/peers/install.sh"
)]
async fn two_relays_share_one_cutover_through_ssm() {
    if !run_or_skip("two_relays_share_one_cutover_through_ssm", moto_missing()) {
        return;
    }
    // SSM and SES in separate moto processes, so SSM can be stopped alone.
    let (ssm, ses) = tokio::task::spawn_blocking(|| (Moto::start(), Moto::start()))
        .await
        .unwrap();
    prepare_ses(&ses.endpoint()).await;
    let legacy = SmtpSink::start().await;
    let (dir_a, dir_b) = (TempDir::new("fleet-a"), TempDir::new("fleet-b"));

    // The first relay creates the parameter from its config; the second,
    // configured otherwise, takes the shared value.
    let a = RunningRelay::start(fleet_config(
        &ses.endpoint(),
        &ssm.endpoint(),
        legacy.addr,
        &dir_a,
        0.0,
    ))
    .await;
    let b = RunningRelay::start(fleet_config(
        &ses.endpoint(),
        &ssm.endpoint(),
        legacy.addr,
        &dir_b,
        100.0,
    ))
    .await;
    for relay in [&a, &b] {
        let status = cutover(relay).await;
        assert_eq!(status["store"], "ssm", "{status}");
        assert_eq!(status["ses_percent"].as_f64(), Some(0.0), "{status}");
        assert_eq!(status["version"].as_i64(), Some(1), "{status}");
        assert_eq!(status["source"], "config", "{status}");
        assert!(status["refreshed_at"].is_string(), "{status}");
    }

    // A change through A is in force on B within refresh-interval, and routes there.
    let answer = set(&a, 100.0, "week 3").await;
    assert_eq!(answer.status, 200, "{}", answer.body);
    let status: serde_json::Value = serde_json::from_str(&answer.body).unwrap();
    assert_eq!(
        (status["ses_percent"].as_f64(), status["version"].as_i64()),
        (Some(100.0), Some(2))
    );
    assert_eq!(status["source"], "api");
    let took = until_percent(&b, 100.0, REFRESH * 3).await;
    println!("A's change in force on B after {took:?}");
    assert!(took <= REFRESH + Duration::from_millis(800), "{took:?}");
    let status = cutover(&b).await;
    assert_eq!(
        (status["version"].as_i64(), status["reason"].as_str()),
        (Some(2), Some("week 3")),
        "{status}"
    );
    assert!(send(&b, "via-b-100").await.starts_with("250"));
    assert_eq!(route_of(&ses, &legacy, "via-b-100"), "ses");

    // And the other way round.
    let answer = set(&b, 0.0, "roll back").await;
    assert_eq!(answer.status, 200, "{}", answer.body);
    let took = until_percent(&a, 0.0, REFRESH * 3).await;
    assert!(took <= REFRESH + Duration::from_millis(800), "{took:?}");
    assert!(send(&a, "via-a-0").await.starts_with("250"));
    assert_eq!(route_of(&ses, &legacy, "via-a-0"), "legacy");
    assert_eq!(cutover(&a).await["version"].as_i64(), Some(3));

    // A restarted relay (config 50, no cache) starts from the shared value at once.
    a.stop().await;
    let fresh = TempDir::new("fleet-a2");
    let a = RunningRelay::start(fleet_config(
        &ses.endpoint(),
        &ssm.endpoint(),
        legacy.addr,
        &fresh,
        50.0,
    ))
    .await;
    let status = cutover(&a).await;
    assert_eq!(
        (status["ses_percent"].as_f64(), status["version"].as_i64()),
        (Some(0.0), Some(3)),
        "{status}"
    );
    assert_eq!(a.control.router.ses_percent(), 0.0);

    // SSM stops: routing stays on the last value, the relay stays ready, errors are counted.
    let ssm_endpoint = ssm.endpoint();
    let before = Metrics::of(&a).await;
    drop(ssm);
    let store_errors = || async {
        let after = Metrics::of(&a).await;
        after.delta(&before, "ses_relay_cutover_store_errors_total", &[])
    };
    wait_until_async(REFRESH * 4, || async {
        let errors = store_errors().await;
        ok_if(errors >= 2.0, format!("{errors} failed refreshes counted"))
    })
    .await;
    let status = cutover(&a).await;
    assert_eq!(
        (status["ses_percent"].as_f64(), status["version"].as_i64()),
        (Some(0.0), Some(3)),
        "{status}"
    );
    assert!(send(&a, "ssm-down").await.starts_with("250"));
    assert_eq!(route_of(&ses, &legacy, "ssm-down"), "legacy");
    assert_eq!(get(a.admin(), "/readyz").await.status, 200);
    let errors = store_errors().await;
    assert!(errors >= 2.0, "refreshes failed and were counted: {errors}");
    // A change cannot reach the fleet: refused, nothing changes here either.
    let answer = set(&a, 100.0, "while SSM is down").await;
    assert_eq!(answer.status, 503, "{}", answer.body);
    assert_eq!(a.control.router.ses_percent(), 0.0);

    // B restarted while SSM is down: from its cached copy (version 3, 0%), not its config's 100%.
    b.stop().await;
    let cache: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir_b.path("state/cutover.json")).unwrap())
            .unwrap();
    assert_eq!(
        (cache["ses_percent"].as_f64(), cache["version"].as_i64()),
        (Some(0.0), Some(3)),
        "{cache}"
    );
    let b = RunningRelay::start(fleet_config(
        &ses.endpoint(),
        &ssm_endpoint,
        legacy.addr,
        &dir_b,
        100.0,
    ))
    .await;
    let status = cutover(&b).await;
    assert_eq!(
        (status["ses_percent"].as_f64(), status["version"].as_i64()),
        (Some(0.0), Some(3)),
        "{status}"
    );
    assert!(
        status["refreshed_at"].is_null(),
        "never read from SSM: {status}"
    );
    assert!(send(&b, "cached").await.starts_with("250"));
    assert_eq!(route_of(&ses, &legacy, "cached"), "legacy");
    a.stop().await;
    b.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readyz_answers_503_from_the_start_of_the_drain_while_a_transaction_finishes() {
    let ses = common::ses_fake::SesFake::start().await;
    let mut config = test_config(&ses.endpoint());
    config.smtp.shutdown_grace = HumanDuration(Duration::from_secs(10));
    let relay = RunningRelay::start(config).await;
    assert_eq!(get(relay.admin(), "/readyz").await.status, 200);
    // A transaction in flight keeps the drain going.
    let mut client = SmtpClient::greeted(relay.addr).await;
    client.ehlo("postfix.test").await;
    client.expect("MAIL FROM:<news@goo.ne.jp>", "2").await;
    relay.shutdown.trigger();
    let answer = wait_until_async(Duration::from_secs(5), || async {
        let answer = get(relay.admin(), "/readyz").await;
        match answer.status {
            503 => Ok(answer),
            _ => Err(format!("{}: {}", answer.status, answer.body)),
        }
    })
    .await;
    assert_eq!(answer.status, 503, "{}", answer.body);
    let body: serde_json::Value = serde_json::from_str(&answer.body).unwrap();
    assert_eq!(body["shutting_down"], true, "{body}");
    // /healthz still answers: the process is alive, only draining.
    assert_eq!(get(relay.admin(), "/healthz").await.status, 200);
    // New SMTP connections are no longer accepted.
    assert!(
        tokio::net::TcpStream::connect(relay.addr).await.is_err(),
        "listener closed during the drain"
    );
    client.write("QUIT\r\n").await;
    assert!(relay.stop().await, "drained");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(
    not(has_moto),
    ignore = "needs moto (SES emulator): run tests/peers/install.sh"
)]
async fn preflight_checks_get_parameter_on_the_shared_parameter() {
    use ses_relay::tools::preflight::Level;
    if !run_or_skip(
        "preflight_checks_get_parameter_on_the_shared_parameter",
        moto_missing(),
    ) {
        return;
    }
    let ssm = tokio::task::spawn_blocking(Moto::start).await.unwrap();
    let dir = TempDir::new("fleet-preflight");
    let legacy = SmtpSink::start().await;
    let mut config = fleet_config("", &ssm.endpoint(), legacy.addr, &dir, 10.0);
    config.ses.mode = ses_relay::config::SesMode::Outbox;
    config.ses.outbox_dir = dir.path("outbox");
    let credentials = Some(aws_sdk_sesv2::config::SharedCredentialsProvider::new(
        aws_sdk_sesv2::config::Credentials::new("test", "test", None, None, "test"),
    ));
    let resolver = ses_relay::tools::dns::StaticResolver::default();
    let ssm_line = |findings: Vec<ses_relay::tools::preflight::Finding>| {
        findings
            .into_iter()
            .find(|f| f.check == format!("ssm parameter {PARAMETER}"))
            .expect("an ssm parameter line")
    };
    // Absent: allowed to read, the first relay will create it.
    let absent =
        ssm_line(ses_relay::tools::preflight::run(&config, &resolver, credentials.clone()).await);
    assert_eq!(absent.level, Level::Warn, "{absent}");
    // Present: PASS with its version and value.
    let relay = RunningRelay::start(config.clone()).await;
    relay.stop().await;
    let present =
        ssm_line(ses_relay::tools::preflight::run(&config, &resolver, credentials.clone()).await);
    assert_eq!(present.level, Level::Pass, "{present}");
    assert!(
        present.detail.contains("version 1") && present.detail.contains("ses_percent 10"),
        "{present}"
    );
    // SSM gone: FAIL naming the call.
    drop(ssm);
    let down = ssm_line(ses_relay::tools::preflight::run(&config, &resolver, credentials).await);
    assert_eq!(down.level, Level::Fail, "{down}");
    assert!(down.detail.contains("GetParameter"), "{down}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(
    not(has_moto),
    ignore = "needs moto (SES emulator): run tests/peers/install.sh"
)]
async fn a_guard_trip_on_one_relay_moves_the_fleet() {
    use ses_relay::control::cutover::{Change, Source};
    if !run_or_skip("a_guard_trip_on_one_relay_moves_the_fleet", moto_missing()) {
        return;
    }
    let ssm = tokio::task::spawn_blocking(Moto::start).await.unwrap();
    let legacy = SmtpSink::start().await;
    let (dir_a, dir_b) = (TempDir::new("guard-a"), TempDir::new("guard-b"));
    let guarded = |dir: &TempDir| {
        let mut config = fleet_config(
            "http://127.0.0.1:9",
            &ssm.endpoint(),
            legacy.addr,
            dir,
            100.0,
        );
        config.guard.enabled = true;
        config
    };
    let a = RunningRelay::start(guarded(&dir_a)).await;
    let b = RunningRelay::start(guarded(&dir_b)).await;
    assert_eq!(b.control.router.ses_percent(), 100.0);
    // The guard's path: in force here at once, written to SSM right after.
    let reason = "guard: failure ratio 0.31 > 0.05 over 5m (62 of 200)";
    let writing = a.control.cutover.change(Change {
        percent: ses_relay::message::route::Percent::ZERO,
        reason: reason.into(),
        by: Source::Guard,
    });
    let status = a.control.cutover.status();
    assert_eq!((status.ses_percent, status.source), (0.0, Source::Guard));
    assert_eq!(a.control.router.ses_percent(), 0.0);
    writing.await.unwrap();
    until_percent(&b, 0.0, REFRESH * 3).await;
    let status = cutover(&b).await;
    assert_eq!(status["source"], "guard", "{status}");
    assert_eq!(status["reason"], reason, "{status}");
    assert_eq!(status["version"].as_i64(), Some(2), "{status}");
    // A records the version SSM gave its change.
    assert_eq!(cutover(&a).await["version"].as_i64(), Some(2));

    a.stop().await;
    b.stop().await;
}

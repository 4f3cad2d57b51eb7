//! The fleet's cutover under SSM faults, on moto's SSM with two relays: a
//! deleted and re-created parameter is followed (the API, the CLI and a
//! PutParameter by hand each reach both relays within `refresh-interval` +
//! 1 s); a `PUT` while SSM is stopped answers `applied: unknown`, and once
//! SSM runs again both relays show what it holds, with an audit line; a
//! value that is not a percentage (`12.345`, `1e-320`, `-0.0`, `"50"`) is
//! refused and the last good value kept.
//!
//! Skips with the reason printed when moto is missing, unless
//! `SES_RELAY_REQUIRE_PEERS=1` (as `.ci/run` sets).

mod common;

use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use aws_sdk_ssm::config::{Credentials, Region};
use common::admin::cutover;
use common::fleet::{PARAMETER, REFRESH, TOKEN, fleet_config, set, until_percent};
use common::metrics::Metrics;
use common::peers::{Moto, moto_missing, run_or_skip};
use common::smtp_sink::SmtpSink;
use common::wait::{ok_if, wait_until_async};
use common::{RunningRelay, TempDir};

/// Both relays must show a change within this.
const WITHIN: Duration = Duration::from_millis(REFRESH.as_millis() as u64 + 1_000);

/// An SSM client as an operator's `aws ssm` would be.
async fn operator_ssm(endpoint: &str) -> aws_sdk_ssm::Client {
    let config = aws_sdk_ssm::Config::builder()
        .behavior_version(aws_sdk_ssm::config::BehaviorVersion::latest())
        .region(Region::new("ap-northeast-1"))
        .endpoint_url(endpoint)
        .credentials_provider(Credentials::new("test", "test", None, None, "test"))
        .build();
    aws_sdk_ssm::Client::from_conf(config)
}

/// `aws ssm put-parameter --overwrite --value TEXT`.
async fn put_by_hand(ssm: &aws_sdk_ssm::Client, text: &str) -> i64 {
    ssm.put_parameter()
        .name(PARAMETER)
        .value(text)
        .r#type(aws_sdk_ssm::types::ParameterType::String)
        .overwrite(true)
        .send()
        .await
        .expect("PutParameter")
        .version
}

async fn held(ssm: &aws_sdk_ssm::Client) -> (f64, i64) {
    let parameter = ssm
        .get_parameter()
        .name(PARAMETER)
        .send()
        .await
        .expect("GetParameter")
        .parameter
        .unwrap();
    let value: serde_json::Value = serde_json::from_str(parameter.value().unwrap()).unwrap();
    (value["ses_percent"].as_f64().unwrap(), parameter.version)
}

async fn both_within(a: &RunningRelay, b: &RunningRelay, percent: f64, what: &str) {
    for relay in [a, b] {
        let took = until_percent(relay, percent, WITHIN * 2).await;
        assert!(took <= WITHIN, "{what}: {percent}% took {took:?}");
    }
}

fn start_moto() -> Moto {
    Moto::start()
}

async fn fleet(
    ssm: &Moto,
    legacy: &SmtpSink,
    dirs: &(TempDir, TempDir),
) -> (RunningRelay, RunningRelay) {
    let a = RunningRelay::start(fleet_config(
        "http://127.0.0.1:9",
        &ssm.endpoint(),
        legacy.addr,
        &dirs.0,
        100.0,
    ))
    .await;
    let b = RunningRelay::start(fleet_config(
        "http://127.0.0.1:9",
        &ssm.endpoint(),
        legacy.addr,
        &dirs.1,
        100.0,
    ))
    .await;
    (a, b)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_recreated_parameter_is_followed_through_the_api_the_cli_and_by_hand() {
    if !run_or_skip(
        "a_recreated_parameter_is_followed_through_the_api_the_cli_and_by_hand",
        moto_missing(),
    ) {
        return;
    }
    let ssm = tokio::task::spawn_blocking(start_moto).await.unwrap();
    let legacy = SmtpSink::start().await;
    let dirs = (TempDir::new("recreate-a"), TempDir::new("recreate-b"));
    let (a, b) = fleet(&ssm, &legacy, &dirs).await;
    let hand = operator_ssm(&ssm.endpoint()).await;
    // Several changes: the version in force climbs to 4.
    for percent in [10.0, 50.0, 90.0] {
        assert_eq!(set(&a, percent, "step").await.status, 200);
    }
    both_within(&a, &b, 90.0, "before").await;
    assert_eq!(cutover(&b).await["version"].as_i64(), Some(4));

    for way in ["api", "cli", "by hand"] {
        // Deleted and re-created: its versions start again at 1.
        hand.delete_parameter()
            .name(PARAMETER)
            .send()
            .await
            .unwrap();
        let version = put_by_hand(&hand, r#"{"ses_percent": 100, "reason": "re-created"}"#).await;
        assert_eq!(version, 1);
        both_within(&a, &b, 100.0, way).await;
        let rollback = match way {
            "api" => {
                let answer = set(&a, 0.0, "roll back through the API").await;
                assert_eq!(answer.status, 200, "{}", answer.body);
                0.0
            }
            "cli" => {
                let cli = TempDir::new("recreate-cli");
                let config = cli.path("cli.toml");
                std::fs::write(cli.path("token"), TOKEN).unwrap();
                std::fs::write(
                    &config,
                    format!(
                        "[admin]\nlisten = \"{}\"\ntoken-file = \"{}\"\n",
                        b.admin_addr.unwrap(),
                        cli.path("token").display()
                    ),
                )
                .unwrap();
                let config = config.display().to_string();
                let (code, out, err) = tokio::task::spawn_blocking(move || {
                    common::ses_relay(&[
                        "cutover",
                        "--config",
                        &config,
                        "set",
                        "5",
                        "--reason",
                        "roll back through the CLI",
                    ])
                })
                .await
                .unwrap();
                assert_eq!(code, 0, "{out}{err}");
                5.0
            }
            _ => {
                put_by_hand(&hand, r#"{"ses_percent": 2.5, "reason": "by hand"}"#).await;
                2.5
            }
        };
        both_within(&a, &b, rollback, way).await;
        assert_eq!(held(&hand).await, (rollback, 2), "{way}");
    }
    a.stop().await;
    b.stop().await;
}

/// JSON log lines of this test binary, for the audit lines.
fn log_lines() -> Arc<Mutex<Vec<u8>>> {
    static LINES: OnceLock<Arc<Mutex<Vec<u8>>>> = OnceLock::new();
    LINES
        .get_or_init(|| {
            let lines = Arc::new(Mutex::new(Vec::new()));
            let sink = lines.clone();
            let subscriber = tracing_subscriber::fmt()
                .json()
                .flatten_event(true)
                .with_writer(move || Writer(sink.clone()))
                .finish();
            let _ = tracing::subscriber::set_global_default(subscriber);
            lines
        })
        .clone()
}

struct Writer(Arc<Mutex<Vec<u8>>>);

impl std::io::Write for Writer {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(bytes);
        Ok(bytes.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

fn signal(pid: u32, name: &str) {
    let status = std::process::Command::new("kill")
        .args([&format!("-{name}"), &pid.to_string()])
        .status()
        .unwrap();
    assert!(status.success(), "kill -{name} {pid}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_put_while_ssm_is_stopped_is_unknown_then_both_relays_show_what_ssm_holds() {
    if !run_or_skip(
        "a_put_while_ssm_is_stopped_is_unknown_then_both_relays_show_what_ssm_holds",
        moto_missing(),
    ) {
        return;
    }
    let lines = log_lines();
    let ssm = tokio::task::spawn_blocking(start_moto).await.unwrap();
    let legacy = SmtpSink::start().await;
    let dirs = (TempDir::new("stopped-a"), TempDir::new("stopped-b"));
    let (a, b) = fleet(&ssm, &legacy, &dirs).await;
    let hand = operator_ssm(&ssm.endpoint()).await;
    both_within(&a, &b, 100.0, "start").await;

    signal(ssm.pid(), "STOP");
    let started = Instant::now();
    let answer = set(&a, 70.0, "during the stall").await;
    let waited = started.elapsed();
    signal(ssm.pid(), "CONT");
    assert_eq!(answer.status, 503, "{}", answer.body);
    let body: serde_json::Value = serde_json::from_str(&answer.body).unwrap();
    assert_eq!(body["applied"], "unknown", "{body}");
    assert!(
        body["error"].as_str().unwrap().contains("unknown"),
        "{body}"
    );
    assert!(waited < Duration::from_secs(10), "{waited:?}");
    assert_eq!(
        body["ses_percent"].as_f64(),
        Some(100.0),
        "nothing changed here while unknown"
    );

    // SSM runs again: both relays come to what it holds, whatever that is.
    let holds = wait_until_async(Duration::from_secs(20), || async {
        let (percent, version) = held(&hand).await;
        let a_now = cutover(&a).await;
        let b_now = cutover(&b).await;
        let agree = [&a_now, &b_now].iter().all(|s| {
            s["ses_percent"].as_f64() == Some(percent) && s["version"].as_i64() == Some(version)
        });
        match agree {
            true => Ok((percent, version)),
            false => Err(format!(
                "SSM holds {percent}% v{version}; A {a_now}; B {b_now}"
            )),
        }
    })
    .await;
    // Never two versions for one write (no SDK retry after the relay gave up).
    assert!(holds.1 <= 2, "{holds:?}");
    // And the relay that made the write says what became of it, once.
    let resolved = |text: &str| -> Vec<serde_json::Value> {
        text.lines()
            .filter_map(|l| serde_json::from_str(l).ok())
            .filter(|l: &serde_json::Value| {
                l["audit"] == "cutover"
                    && l["message"] == "the outcome of the unknown cutover write is known"
            })
            .collect()
    };
    let text = wait_until_async(Duration::from_secs(10), || async {
        let text = String::from_utf8(lines.lock().unwrap().clone()).unwrap();
        match resolved(&text).is_empty() {
            false => Ok(text),
            true => Err(format!("no audit line for the outcome:\n{text}")),
        }
    })
    .await;
    // "Once" is under test: half a second for a second line that must not come.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let resolved = resolved(&String::from_utf8(lines.lock().unwrap().clone()).unwrap());
    assert_eq!(resolved.len(), 1, "one audit line for the outcome:\n{text}");
    assert_eq!(resolved[0]["ses_percent"].as_f64(), Some(holds.0));
    assert_eq!(resolved[0]["applied"].as_bool(), Some(holds.0 == 70.0));
    a.stop().await;
    b.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_ssm_value_that_is_not_a_percentage_is_refused_and_the_last_good_one_kept() {
    if !run_or_skip(
        "an_ssm_value_that_is_not_a_percentage_is_refused_and_the_last_good_one_kept",
        moto_missing(),
    ) {
        return;
    }
    let ssm = tokio::task::spawn_blocking(start_moto).await.unwrap();
    let legacy = SmtpSink::start().await;
    let dirs = (TempDir::new("bad-a"), TempDir::new("bad-b"));
    let (a, b) = fleet(&ssm, &legacy, &dirs).await;
    let hand = operator_ssm(&ssm.endpoint()).await;
    put_by_hand(&hand, r#"{"ses_percent": 40, "reason": "good"}"#).await;
    both_within(&a, &b, 40.0, "good").await;
    let errors = "ses_relay_cutover_store_errors_total";
    for bad in [
        r#"{"ses_percent": 12.345, "reason": "bad"}"#,
        r#"{"ses_percent": 1e-320, "reason": "bad"}"#,
        r#"{"ses_percent": -0.0, "reason": "bad"}"#,
        r#"{"ses_percent": "50", "reason": "bad"}"#,
        r#"[50, "bad"]"#,
        r#""50""#,
    ] {
        let before = Metrics::of(&a).await;
        put_by_hand(&hand, bad).await;
        // Both relays read it (each refusal is counted once per refresh).
        wait_until_async(WITHIN * 2, || async {
            let counted = Metrics::of(&a).await.delta(&before, errors, &[]);
            ok_if(counted >= 2.0, format!("{bad}: {counted} errors counted"))
        })
        .await;
        for relay in [&a, &b] {
            let status = cutover(relay).await;
            assert_eq!(
                status["ses_percent"].as_f64(),
                Some(40.0),
                "{bad}: {status}"
            );
            assert_eq!(relay.control.router.ses_percent(), 40.0, "{bad}");
        }
        let counted = Metrics::of(&a).await.delta(&before, errors, &[]);
        assert!(counted > 0.0, "{bad}: refused values are counted");
    }
    // The next good value is taken again.
    put_by_hand(&hand, r#"{"ses_percent": 30, "reason": "good again"}"#).await;
    both_within(&a, &b, 30.0, "good again").await;
    a.stop().await;
    b.stop().await;
}

//! The admin listener over real sockets on 127.0.0.1: tokens, the connection
//! cap and the header-read timeout.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use super::AdminState;
use super::access::Limits;
use crate::config::{DkimConfig, SmtpConfig};
use crate::daemon::state::Reloadable;
use crate::message::prepare::Preparer;
use crate::message::prepare::dkim::DkimKeys;

const READ: &str = "read-token";
const WRITE: &str = "write-token";

fn state(read_token: Option<&str>) -> Arc<AdminState> {
    let live = Reloadable {
        smtp: SmtpConfig::default(),
        tls: None,
        preparer: Preparer::new(
            "relay.test",
            DkimKeys::load(&DkimConfig::default()).unwrap(),
            "set",
            false,
        ),
        rules: Vec::new(),
        admin_token: Some(WRITE.into()),
        admin_read_token: read_token.map(str::to_string),
    };
    AdminState::for_tests(live, 0.0)
}

async fn start(state: Arc<AdminState>, limits: Limits) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(super::serve_with(listener, state, limits));
    addr
}

/// One request with `Connection: close`; the status code and the whole answer.
async fn request(
    addr: SocketAddr,
    method: &str,
    path: &str,
    token: Option<&str>,
    body: &str,
) -> (u16, String) {
    let mut stream = TcpStream::connect(addr).await.unwrap();
    let auth = token.map_or(String::new(), |t| format!("Authorization: Bearer {t}\r\n"));
    let head = format!(
        "{method} {path} HTTP/1.1\r\nHost: admin\r\nConnection: close\r\n{auth}Content-Length: {}\r\n\r\n{body}",
        body.len()
    );
    stream.write_all(head.as_bytes()).await.unwrap();
    let answer = read_all(&mut stream).await;
    let status = answer
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    (status, answer)
}

async fn read_all(stream: &mut TcpStream) -> String {
    let mut answer = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(10), stream.read_to_end(&mut answer))
        .await
        .expect("the admin API answers and closes in time");
    String::from_utf8_lossy(&answer).into_owned()
}

#[tokio::test]
async fn with_a_read_token_only_probes_are_open() {
    let addr = start(state(Some(READ)), Limits::default()).await;
    for path in ["/cutover", "/metrics", "/", "/runbook", "/unknown"] {
        let (status, answer) = request(addr, "GET", path, None, "").await;
        assert_eq!(status, 401, "{path}: {answer}");
        assert!(
            answer
                .to_ascii_lowercase()
                .contains("www-authenticate: bearer"),
            "{answer}"
        );
        assert_eq!(request(addr, "GET", path, Some("wrong"), "").await.0, 401);
    }
    for token in [READ, WRITE] {
        for path in ["/cutover", "/metrics", "/", "/runbook"] {
            let (status, answer) = request(addr, "GET", path, Some(token), "").await;
            assert_eq!(status, 200, "{path} with {token}: {answer}");
        }
    }
    let (_, cutover) = request(addr, "GET", "/cutover", Some(READ), "").await;
    assert!(cutover.contains("internationalized-addresses"), "{cutover}");
    for path in ["/healthz", "/readyz"] {
        let (status, answer) = request(addr, "GET", path, None, "").await;
        assert!(status == 200 || status == 503, "{path}: {answer}");
    }
    // The read token does not change anything; the write token does.
    let change = r#"{"ses_percent": 10, "reason": "test"}"#;
    assert_eq!(
        request(addr, "PUT", "/cutover", Some(READ), change).await.0,
        401
    );
    let (status, answer) = request(addr, "PUT", "/cutover", Some(WRITE), change).await;
    assert_eq!(status, 200, "{answer}");
}

#[tokio::test]
async fn on_loopback_without_a_read_token_reads_stay_open() {
    let addr = start(state(None), Limits::default()).await;
    assert_eq!(request(addr, "GET", "/cutover", None, "").await.0, 200);
    assert_eq!(request(addr, "GET", "/metrics", None, "").await.0, 200);
    let change = r#"{"ses_percent": 10, "reason": "test"}"#;
    assert_eq!(request(addr, "PUT", "/cutover", None, change).await.0, 401);
}

#[tokio::test]
async fn idle_connections_at_the_cap_make_room_for_a_probe() {
    let limits = Limits {
        max_connections: 2,
        ..Limits::default()
    };
    let addr = start(state(None), limits).await;
    let mut first = TcpStream::connect(addr).await.unwrap();
    let _second = TcpStream::connect(addr).await.unwrap();
    // Both are accepted (and hold a place) before the probe arrives.
    tokio::time::sleep(Duration::from_millis(200)).await;
    let started = Instant::now();
    let (status, answer) = request(addr, "GET", "/readyz", None, "").await;
    assert_eq!(status, 200, "{answer}");
    assert!(started.elapsed() < Duration::from_secs(1));
    // The connection idle the longest was closed for it.
    let mut byte = [0u8; 1];
    let read = tokio::time::timeout(Duration::from_secs(5), first.read(&mut byte)).await;
    assert!(matches!(read, Ok(Ok(0)) | Ok(Err(_))), "{read:?}");
}

#[tokio::test]
async fn a_hundred_idle_connections_do_not_keep_the_probes_out() {
    let addr = start(state(None), Limits::default()).await;
    let mut idle = Vec::new();
    for _ in 0..100 {
        idle.push(TcpStream::connect(addr).await.unwrap());
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    for path in ["/readyz", "/healthz"] {
        let started = Instant::now();
        let (status, answer) = request(addr, "GET", path, None, "").await;
        assert_eq!(status, 200, "{path}: {answer}");
        assert!(started.elapsed() < Duration::from_secs(1), "{path}");
    }
}

#[tokio::test]
async fn a_slow_request_head_is_cut_at_the_header_read_timeout() {
    let limits = Limits {
        header_read_timeout: Duration::from_millis(300),
        ..Limits::default()
    };
    let addr = start(state(None), limits).await;
    for partial in ["", "GET /metrics HTTP/1.1\r\nHost: admin\r\n"] {
        let started = Instant::now();
        let mut stream = TcpStream::connect(addr).await.unwrap();
        stream.write_all(partial.as_bytes()).await.unwrap();
        let answer = read_all(&mut stream).await;
        // Closed (hyper may say 408 first) well before the 60 s connection bound.
        assert!(
            answer.is_empty() || answer.starts_with("HTTP/1.1 408"),
            "{partial:?}: {answer}"
        );
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "{partial:?}: {:?}",
            started.elapsed()
        );
    }
}

#[test]
fn off_loopback_reads_need_a_token_even_without_a_read_token_file() {
    let relay = state(None);
    let get = |path: &str, token: Option<&str>| {
        let mut request = hyper::Request::get(path);
        if let Some(token) = token {
            request = request.header("authorization", format!("Bearer {token}"));
        }
        let request = request.body(()).unwrap();
        super::refuse_read(&relay, true, &request).map(|reply| reply.status().as_u16())
    };
    for path in ["/cutover", "/metrics", "/"] {
        assert_eq!(get(path, None), Some(401), "{path}");
        assert_eq!(get(path, Some("guess")), Some(401), "{path}");
        assert_eq!(
            get(path, Some(WRITE)),
            None,
            "{path}: the write token reads"
        );
    }
    assert_eq!(get("/healthz", None), None);
    assert_eq!(get("/readyz", None), None);
    // The same relay on loopback: open, as before.
    let request = hyper::Request::get("/metrics").body(()).unwrap();
    assert!(super::refuse_read(&relay, false, &request).is_none());
}

#[tokio::test]
async fn every_body_that_is_not_exactly_a_percentage_gets_400_and_changes_nothing() {
    let relay = state(None);
    let addr = start(relay.clone(), Limits::default()).await;
    for body in [
        r#"{"ses_percent": 12.345, "reason": "x"}"#,
        r#"{"ses_percent": 12.3400000001, "reason": "x"}"#,
        r#"{"ses_percent": 99.999999999, "reason": "x"}"#,
        r#"{"ses_percent": 1e-320, "reason": "x"}"#,
        r#"{"ses_percent": -0.0, "reason": "x"}"#,
        r#"{"ses_percent": -1, "reason": "x"}"#,
        r#"{"ses_percent": 100.5, "reason": "x"}"#,
        r#"{"ses_percent": "50", "reason": "x"}"#,
        r#"{"ses_percent": null, "reason": "x"}"#,
        r#"{"ses_percent": 50, "reason": "x", "extra": 1}"#,
        r#"{"ses_percent": 50, "reason": "  "}"#,
        r#"[10, "x"]"#,
        r#"[10]"#,
        r#""50""#,
        r#"50"#,
        "",
    ] {
        let (status, answer) = request(addr, "PUT", "/cutover", Some(WRITE), body).await;
        assert_eq!(status, 400, "{body}: {answer}");
        assert!(answer.contains("\"error\""), "{body}: {answer}");
    }
    assert_eq!(relay.cutover.status().ses_percent, 0.0);
    assert_eq!(relay.router.ses_percent(), 0.0);
    // Two decimals, exactly: taken, and what is shown is what routes.
    let (status, answer) = request(
        addr,
        "PUT",
        "/cutover",
        Some(WRITE),
        r#"{"ses_percent": 12.34, "reason": "x"}"#,
    )
    .await;
    assert_eq!(status, 200, "{answer}");
    assert!(answer.contains("\"ses_percent\": 12.34"), "{answer}");
    assert_eq!(relay.router.ses_percent(), 12.34);
}

#[tokio::test]
async fn readiness_is_serving_not_the_health_of_a_route() {
    let mut relay = state(None);
    let health = crate::daemon::background::UpstreamHealth::default();
    Arc::get_mut(&mut relay).unwrap().legacy_health = Some(health);
    let addr = start(relay.clone(), Limits::default()).await;
    // The legacy relay not reached (its probe says nothing yet, or down): ready all the same.
    let (status, answer) = request(addr, "GET", "/readyz", None, "").await;
    assert_eq!(status, 200, "{answer}");
    assert!(answer.contains("\"legacy\": \"unknown\""), "{answer}");
    relay.shutdown.trigger();
    let (status, answer) = request(addr, "GET", "/readyz", None, "").await;
    assert_eq!(status, 503, "draining: {answer}");
}

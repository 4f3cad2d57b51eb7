//! The admin API as the tests ask it: one request through the crate's own
//! client (blocking, so run off the async workers that serve an in-process
//! relay), `GET /cutover`'s JSON and `PUT /cutover`.

use std::net::SocketAddr;

use serde_json::Value;
use ses_relay::control::admin::client::{Answer, request as blocking_request};

use super::RunningRelay;

/// `method path` on the admin API at `addr`, with `token` as the bearer.
pub async fn request(
    addr: SocketAddr,
    method: &str,
    path: &str,
    token: Option<&str>,
    body: Option<String>,
) -> Answer {
    let (method, path, token) = (
        method.to_string(),
        path.to_string(),
        token.map(String::from),
    );
    tokio::task::spawn_blocking(move || {
        blocking_request(addr, &method, &path, token.as_deref(), body.as_deref())
            .unwrap_or_else(|err| panic!("{method} {path}: {err}"))
    })
    .await
    .unwrap()
}

/// `GET path` without a token.
pub async fn get(addr: SocketAddr, path: &str) -> Answer {
    request(addr, "GET", path, None, None).await
}

/// `GET /cutover` of `relay`, which must answer 200; its JSON.
pub async fn cutover(relay: &RunningRelay) -> Value {
    let answer = get(relay.admin(), "/cutover").await;
    assert_eq!(answer.status, 200, "{}", answer.body);
    serde_json::from_str(&answer.body).unwrap()
}

/// `PUT /cutover` of `percent` with `reason`, as the holder of `token`.
pub async fn set_cutover(relay: &RunningRelay, token: &str, percent: f64, reason: &str) -> Answer {
    let body = serde_json::json!({ "ses_percent": percent, "reason": reason }).to_string();
    request(relay.admin(), "PUT", "/cutover", Some(token), Some(body)).await
}

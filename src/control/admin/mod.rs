//! The operators' HTTP API on `[admin] listen` (hyper, HTTP/1.1):
//!
//! - `GET /cutover`: the SES percentage in force, its source, last change and the rules;
//! - `PUT /cutover` with `Authorization: Bearer <token>` and `{"ses_percent": 50, "reason": "week 2"}`:
//!   validated, persisted to the state file, applied to the next transactions, audit-logged;
//!   it re-arms the rollback guard;
//! - `GET /healthz`: the process is up; `GET /readyz`: serving, 503 from the moment a
//!   SIGTERM drain starts (the load balancer's health check; upstream health is not readiness);
//! - `GET /metrics`: Prometheus text format; `GET /`: a status page for people;
//!   `GET /runbook`: the operations guide it links to.
//!
//! Off loopback (or with `admin.read-token-file`), everything but the probes
//! needs a bearer token; connections are capped and must send their request
//! head in time (see [`access`]).

pub mod access;
pub mod client;
mod connections;
mod runbook;
mod state;
mod status;

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper::header::{CONTENT_TYPE, HeaderValue, WWW_AUTHENTICATE};
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use serde::Deserialize;
use tokio::net::TcpListener;

use self::access::{Limits, Need};
use self::connections::Connections;

use crate::control::cutover::{Change, CutoverError, Source};
use crate::message::route::Percent;
pub use state::AdminState;

/// Largest request body accepted (a cutover change is a few dozen bytes).
const MAX_BODY: usize = 16 * 1024;

/// Serves the admin API until the task is dropped: through the drain too,
/// so that `/readyz` can answer 503 while transactions finish.
pub async fn serve(listener: TcpListener, state: Arc<AdminState>) {
    serve_with(listener, state, Limits::default()).await
}

/// Answer to a connection past the cap, written without waiting: the client
/// learns why, and nothing is held for it.
const BUSY: &[u8] =
    b"HTTP/1.1 503 Service Unavailable\r\nContent-Length: 0\r\nConnection: close\r\n\r\n";

/// [`serve`] with these bounds.
///
/// At the connection cap, the connection idle the longest (one that has
/// sent nothing, or is between requests) is closed to make room: idle
/// connections, however many, cannot keep a load balancer's probe out. Only
/// when every connection is in the middle of a request is a new one refused.
pub async fn serve_with(listener: TcpListener, state: Arc<AdminState>, limits: Limits) {
    // Fixed for the listener's life: a reload cannot open a listener that is off loopback.
    let off_loopback = listener.local_addr().map_or(true, access::off_loopback);
    let connections = Connections::new(limits.max_connections);
    loop {
        let accepted = listener.accept().await;
        let Ok((stream, _)) = accepted else {
            tokio::time::sleep(Duration::from_millis(50)).await;
            continue;
        };
        let Some(connection) = connections.admit() else {
            let _ = stream.try_write(BUSY);
            tracing::debug!(
                "admin connection refused: {} requests in progress",
                limits.max_connections
            );
            continue;
        };
        let state = state.clone();
        tokio::spawn(async move {
            let closed = connection.closed();
            let activity = connection.clone();
            let service = hyper::service::service_fn(move |request| {
                let busy = activity.busy();
                let state = state.clone();
                async move {
                    let _busy = busy;
                    handle(state, off_loopback, request).await
                }
            });
            let serving = hyper::server::conn::http1::Builder::new()
                .timer(hyper_util::rt::TokioTimer::new())
                .header_read_timeout(limits.header_read_timeout)
                .serve_connection(TokioIo::new(stream), service);
            tokio::select! {
                _ = tokio::time::timeout(limits.connection_lifetime, serving) => {}
                _ = closed => {}
            }
            drop(connection);
        });
    }
}

type Reply = Response<Full<Bytes>>;

fn json(status: StatusCode, value: serde_json::Value) -> Reply {
    let mut body = serde_json::to_vec_pretty(&value).unwrap_or_default();
    body.push(b'\n');
    Response::builder()
        .status(status)
        .header(CONTENT_TYPE, "application/json")
        .body(Full::new(Bytes::from(body)))
        .expect("static response parts")
}

fn text(body: String, content_type: &'static str) -> Reply {
    Response::builder()
        .header(CONTENT_TYPE, content_type)
        .body(Full::new(Bytes::from(body)))
        .expect("static response parts")
}

fn error(status: StatusCode, message: &str) -> Reply {
    json(status, serde_json::json!({ "error": message }))
}

async fn handle(
    state: Arc<AdminState>,
    off_loopback: bool,
    request: Request<Incoming>,
) -> Result<Reply, Infallible> {
    if let Some(refused) = refuse_read(&state, off_loopback, &request) {
        return Ok(refused);
    }
    let reply = match (request.method(), request.uri().path()) {
        (&Method::GET, "/healthz") => json(StatusCode::OK, serde_json::json!({ "status": "ok" })),
        (&Method::GET, "/metrics") => text(
            crate::metrics::render(),
            "text/plain; version=0.0.4; charset=utf-8",
        ),
        (&Method::GET, "/") => text(status::page(&state), "text/html; charset=utf-8"),
        (&Method::GET, "/runbook") => text(runbook::page().into(), "text/html; charset=utf-8"),
        (&Method::GET, "/readyz") => readyz(&state).await,
        (&Method::GET, "/cutover") => cutover_status(&state),
        (&Method::PUT, "/cutover") => cutover_set(&state, request).await,
        (_, "/" | "/runbook" | "/metrics" | "/healthz" | "/readyz" | "/cutover") => {
            error(StatusCode::METHOD_NOT_ALLOWED, "method not allowed")
        }
        _ => error(StatusCode::NOT_FOUND, "not found"),
    };
    Ok(reply)
}

/// The 401 for a read without a valid token, when reads are guarded.
/// Changes are checked by their handler, which audit-logs a refusal.
fn refuse_read<B>(state: &AdminState, off_loopback: bool, request: &Request<B>) -> Option<Reply> {
    if access::need(request.method(), request.uri().path()) != Need::Read {
        return None;
    }
    let live = state.reloadable.current();
    let read = live.admin_read_token.as_deref();
    if !access::reads_guarded(off_loopback, read) {
        return None;
    }
    let given = access::presented(request.headers());
    if access::matches_any(given, &[read, live.admin_token.as_deref()]) {
        return None;
    }
    let mut reply = error(
        StatusCode::UNAUTHORIZED,
        "a valid 'Authorization: Bearer <token>' header is required (admin.read-token-file)",
    );
    reply
        .headers_mut()
        .insert(WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
    Some(reply)
}

fn cutover_status(state: &AdminState) -> Reply {
    let status = state.cutover.status();
    let rules = state.reloadable.current().rules.clone();
    json(
        StatusCode::OK,
        serde_json::json!({
            "ses_percent": status.ses_percent,
            "source": status.source,
            "updated_at": status.updated_at,
            "reason": status.reason,
            "legacy_route": state.router.has_legacy(),
            "rules": rules,
            "guard": status::guard_json(&state.guard.snapshot()),
            // Applied before `rules`, and only when there is a legacy route to send to.
            "built_in_rules": if state.router.has_legacy() {
                crate::message::route::BUILT_IN_RULES
            } else {
                &[]
            },
            "store": status.store,
            "version": status.version,
            "refreshed_at": status.refreshed_at,
            "updated_by": status.updated_by,
            "change_id": status.change_id,
            "pending_write": status.pending_write,
            "upstreams": upstreams_json(state),
        }),
    )
}

/// Each route's reachability as its probe last saw it (SES: not probed).
fn upstreams_json(state: &AdminState) -> serde_json::Value {
    serde_json::json!({ "legacy": legacy_health(state) })
}

/// The legacy relay's reachability in words (`up`, `down`, `unknown`, or
/// `not probed` / `not used` without an SMTP legacy route).
fn legacy_health(state: &AdminState) -> &'static str {
    match &state.legacy_health {
        Some(health) => health.get().as_str(),
        None if state.router.has_legacy() => "not probed",
        None => "not used",
    }
}

/// `PUT /cutover` body: a JSON object with exactly these two fields.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ChangeBody {
    ses_percent: Percent,
    reason: String,
}

/// What a `PUT /cutover` body must be, said with every refusal.
const EXPECTED: &str =
    "expected {\"ses_percent\": <0-100, at most two decimals>, \"reason\": \"...\"}";

async fn cutover_set(state: &AdminState, request: Request<Incoming>) -> Reply {
    let given = access::presented(request.headers());
    let authorized =
        access::matches_any(given, &[state.reloadable.current().admin_token.as_deref()]);
    if !authorized {
        tracing::warn!(audit = "cutover", "change refused: missing or wrong token");
        return error(
            StatusCode::UNAUTHORIZED,
            "a valid 'Authorization: Bearer <token>' header is required",
        );
    }
    let body = match Limited::new(request.into_body(), MAX_BODY).collect().await {
        Ok(body) => body.to_bytes(),
        Err(_) => return error(StatusCode::BAD_REQUEST, "body unreadable or over 16 KiB"),
    };
    // A JSON object only, its percentage through the one validation (`Percent`).
    let change: ChangeBody = match crate::control::cutover::json_object(&body) {
        Ok(change) => change,
        Err(err) => return error(StatusCode::BAD_REQUEST, &format!("{EXPECTED}: {err}")),
    };
    if change.reason.trim().is_empty() {
        return error(
            StatusCode::BAD_REQUEST,
            "reason must not be empty: it goes into the audit log",
        );
    }
    if !state.router.has_legacy() && change.ses_percent < Percent::ALL {
        return error(
            StatusCode::BAD_REQUEST,
            "no [legacy] route is configured: only 100 is possible",
        );
    }
    let asked = change.ses_percent;
    let outcome = state
        .cutover
        .change(Change {
            percent: asked,
            reason: change.reason.trim().to_string(),
            by: Source::Api,
        })
        .await;
    match outcome {
        // The value in force is the value asked for (the guard re-arms on
        // the operator's change by itself).
        Ok(_) => cutover_status(state),
        Err(err @ CutoverError::Percent(_)) => error(StatusCode::BAD_REQUEST, &err.to_string()),
        Err(err @ (CutoverError::NotApplied(_) | CutoverError::Unknown(_))) => json(
            StatusCode::SERVICE_UNAVAILABLE,
            serde_json::json!({
                "error": err.to_string(),
                "applied": err.applied(),
                "ses_percent": state.cutover.status().ses_percent,
            }),
        ),
        Err(err) => {
            tracing::error!(error = %err, "cutover change not applied");
            json(
                StatusCode::INTERNAL_SERVER_ERROR,
                serde_json::json!({ "error": err.to_string(), "applied": false }),
            )
        }
    }
}

/// Ready while serving and not draining. A route's health is not
/// readiness: every relay shares the same legacy relay and the same SES, so
/// a fault there would take the whole fleet out at once, SES route included.
/// The legacy relay's health is shown beside, from its probe.
async fn readyz(state: &AdminState) -> Reply {
    let draining = state.shutdown.is_triggered();
    let status = if draining {
        StatusCode::SERVICE_UNAVAILABLE
    } else {
        StatusCode::OK
    };
    json(
        status,
        serde_json::json!({
            "ready": !draining,
            "shutting_down": draining,
            "upstreams": upstreams_json(state),
            "ses_percent": state.cutover.status().ses_percent,
        }),
    )
}

#[cfg(test)]
mod tests;

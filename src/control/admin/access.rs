//! Who may use the admin API, and how much of it at once.
//!
//! Probes (`/healthz`, `/readyz`) are always open: load balancers and
//! container runtimes call them without credentials, and they reveal nothing.
//! Changes (`PUT`) always need the write token (`admin.token-file`). Reads
//! (`GET /cutover`, `/metrics`, `/`, `/runbook`) need a bearer token when the API listens
//! off loopback, where anyone on the network could otherwise read traffic
//! figures and routing rules, and whenever `admin.read-token-file` is set.
//! The read token or the write token will do for a read: whoever may change
//! the cutover may look at it.

use std::net::SocketAddr;
use std::time::Duration;

use hyper::HeaderMap;
use hyper::header::AUTHORIZATION;

/// Admin connections served at once; past it a connection gets `503` and is
/// closed, so a flood cannot hold memory or tasks without bound.
pub const MAX_CONNECTIONS: usize = 64;

/// A client must send its request head within this (slow-header clients).
pub const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(10);

/// Whole-connection bound, keep-alive included.
pub const CONNECTION_LIFETIME: Duration = Duration::from_secs(60);

/// The listener's bounds (tests shorten them).
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Connections served at once.
    pub max_connections: usize,
    /// Bound on reading a request head.
    pub header_read_timeout: Duration,
    /// Bound on one connection's life.
    pub connection_lifetime: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_connections: MAX_CONNECTIONS,
            header_read_timeout: HEADER_READ_TIMEOUT,
            connection_lifetime: CONNECTION_LIFETIME,
        }
    }
}

/// What a request needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Need {
    /// Nothing: a probe.
    Nothing,
    /// The read or the write token, when reads are guarded.
    Read,
    /// The write token.
    Write,
}

/// What `method` on `path` needs.
pub fn need(method: &hyper::Method, path: &str) -> Need {
    match (method, path) {
        (&hyper::Method::GET, "/healthz" | "/readyz") => Need::Nothing,
        (&hyper::Method::GET | &hyper::Method::HEAD, _) => Need::Read,
        _ => Need::Write,
    }
}

/// Whether a listener bound to `addr` is reachable from other hosts.
pub fn off_loopback(addr: SocketAddr) -> bool {
    !crate::config::is_loopback(addr.ip())
}

/// Whether reads need a token: off loopback, or whenever a read token is set.
pub fn reads_guarded(off_loopback: bool, read_token: Option<&str>) -> bool {
    off_loopback || read_token.is_some()
}

/// The token in `Authorization: Bearer <token>` (scheme in any case, RFC 9110 section 11.1).
pub fn presented(headers: &HeaderMap) -> Option<&str> {
    let value = headers.get(AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.trim().split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("Bearer")
        .then_some(token.trim())
        .filter(|t| !t.is_empty())
}

/// Whether `given` is one of the `accepted` tokens; a missing token matches nothing.
pub fn matches_any(given: Option<&str>, accepted: &[Option<&str>]) -> bool {
    let Some(given) = given else {
        return false;
    };
    // Every candidate is compared, so the time taken does not say which one matched.
    accepted.iter().flatten().fold(false, |found, token| {
        constant_time_eq(token.as_bytes(), given.as_bytes()) | found
    })
}

/// Compares without an early exit, so the time taken does not reveal the token.
pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;
    use hyper::Method;
    use hyper::header::HeaderValue;

    #[test]
    fn probes_are_open_reads_and_writes_are_not() {
        assert_eq!(need(&Method::GET, "/healthz"), Need::Nothing);
        assert_eq!(need(&Method::GET, "/readyz"), Need::Nothing);
        for path in ["/cutover", "/metrics", "/", "/nothing"] {
            assert_eq!(need(&Method::GET, path), Need::Read, "{path}");
        }
        assert_eq!(need(&Method::PUT, "/cutover"), Need::Write);
        assert_eq!(need(&Method::POST, "/healthz"), Need::Write);
    }

    #[test]
    fn reads_are_guarded_off_loopback_or_with_a_read_token() {
        let at = |a: &str| off_loopback(a.parse::<SocketAddr>().unwrap());
        assert!(!reads_guarded(at("127.0.0.1:9925"), None));
        assert!(!reads_guarded(at("127.0.0.2:9925"), None));
        assert!(!reads_guarded(at("[::1]:9925"), None));
        assert!(!reads_guarded(at("[::ffff:127.0.0.1]:9925"), None));
        assert!(reads_guarded(at("127.0.0.1:9925"), Some("r")));
        assert!(reads_guarded(at("0.0.0.0:9925"), None));
        assert!(reads_guarded(at("10.1.2.3:9925"), None));
        assert!(reads_guarded(at("[::]:9925"), None));
    }

    #[test]
    fn bearer_tokens_are_read_and_compared() {
        let mut headers = HeaderMap::new();
        assert_eq!(presented(&headers), None);
        for (value, token) in [
            ("Bearer abc", Some("abc")),
            ("bearer  abc ", Some("abc")),
            ("Basic abc", None),
            ("Bearer", None),
            ("Bearer ", None),
        ] {
            headers.insert(AUTHORIZATION, HeaderValue::from_static(value));
            assert_eq!(presented(&headers), token, "{value:?}");
        }
        assert!(matches_any(Some("w"), &[Some("r"), Some("w")]));
        assert!(matches_any(Some("r"), &[Some("r"), None]));
        assert!(!matches_any(Some("x"), &[Some("r"), Some("w")]));
        assert!(!matches_any(None, &[Some("r")]));
        assert!(!matches_any(Some(""), &[None, None]));
        assert!(!matches_any(Some("ab"), &[Some("abc")]));
    }
}

//! Accepting connections: admission by network, the connection cap, implicit
//! TLS, and one tracked task per session. `accept` never waits on anything
//! else: refusals are written by short tasks of their own.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use ipnet::IpNet;
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpStream};

use crate::connection::proxy;
use crate::connection::session::{Session, SessionContext};
use crate::connection::smtp::Reply;
use crate::connection::tls::{self, TlsMode};
use crate::log::{LogThrottle, Masker};
use crate::metrics;
use crate::net::canonical_ip;

/// How long a refusal may take to write before the socket is dropped.
const REFUSAL_TIMEOUT: Duration = Duration::from_secs(5);

/// Lines an outsider can cause: at most 10 per minute of each kind (the
/// metrics count every event).
static DENIED_LOG: LogThrottle = throttle("client not in allowed-clients, refused");
static OVERLOADED_LOG: LogThrottle = throttle("max-connections reached, refused");
static UNTRUSTED_LOG: LogThrottle = throttle("peer not in proxy-trusted, refused");
static PROXY_HEADER_LOG: LogThrottle = throttle("closed without a greeting (PROXY header)");
static ACCEPT_LOG: LogThrottle = throttle("accept failed");

const fn throttle(what: &'static str) -> LogThrottle {
    LogThrottle::new(what, 10, Duration::from_secs(60))
}

/// After a failed accept the listener waits this long, doubling up to
/// [`ACCEPT_BACKOFF_MAX`] while accepts keep failing: out of descriptors,
/// every retry would fail at once, and a loop would only burn a core.
const ACCEPT_BACKOFF_MIN: Duration = Duration::from_millis(100);
const ACCEPT_BACKOFF_MAX: Duration = Duration::from_secs(1);

/// A bound SMTP listener.
pub struct Listener {
    /// The socket.
    pub socket: TcpListener,
    /// Implicit TLS (port 465 style) rather than plaintext with STARTTLS.
    pub implicit_tls: bool,
}

/// Sessions open across all listeners. The cap is read at each accept (not
/// fixed like a semaphore's permits), so a reload that changes
/// `smtp.max-connections` applies to the next connection; sessions already
/// open past a lowered cap finish.
#[derive(Debug, Default)]
pub struct ConnectionSlots {
    open: AtomicUsize,
}

/// One session's place under the cap, given back when dropped.
#[derive(Debug)]
pub struct Slot(Arc<ConnectionSlots>);

impl ConnectionSlots {
    /// No session open yet.
    pub fn new() -> Arc<ConnectionSlots> {
        Arc::default()
    }

    /// A slot if fewer than `max` sessions are open; never waits.
    pub fn try_acquire(self: &Arc<Self>, max: usize) -> Option<Slot> {
        self.open
            .fetch_update(Ordering::AcqRel, Ordering::Relaxed, |open| {
                (open < max).then_some(open + 1)
            })
            .ok()
            .map(|_| Slot(self.clone()))
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.0.open.fetch_sub(1, Ordering::AcqRel);
    }
}

/// Whether `ip` is in `allowed`; IPv4-mapped IPv6 peers match IPv4 networks.
pub fn is_allowed(allowed: &[IpNet], ip: std::net::IpAddr) -> bool {
    let ip = canonical_ip(ip);
    allowed.iter().any(|net| net.contains(&ip))
}

/// Accepts until shutdown.
pub async fn accept_loop(
    listener: Listener,
    sessions: Arc<SessionContext>,
    slots: Arc<ConnectionSlots>,
) {
    let mut backoff = ACCEPT_BACKOFF_MIN;
    loop {
        let accepted = tokio::select! {
            _ = sessions.shutdown.triggered() => return,
            accepted = listener.socket.accept() => accepted,
        };
        let (stream, peer) = match accepted {
            Ok(pair) => {
                backoff = ACCEPT_BACKOFF_MIN;
                pair
            }
            Err(err) => {
                if ACCEPT_LOG.admit() {
                    tracing::warn!(error = %err, backoff_ms = backoff.as_millis() as u64, "accept failed");
                }
                tokio::select! {
                    _ = sessions.shutdown.triggered() => return,
                    _ = tokio::time::sleep(backoff) => {}
                }
                backoff = (backoff * 2).min(ACCEPT_BACKOFF_MAX);
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        let live = sessions.reloadable.current();
        // Behind a balancer only the balancer may connect; the client it names is checked in `serve`.
        let proxied = live.smtp.proxy_protocol && is_allowed(&live.smtp.proxy_trusted, peer.ip());
        if live.smtp.proxy_protocol && !proxied {
            Refusal::Untrusted.send(stream, &sessions.masker, peer, None);
            continue;
        }
        if !proxied && !live.smtp.admits(peer.ip()) {
            Refusal::NotAllowed.send(stream, &sessions.masker, peer, None);
            continue;
        }
        let Some(permit) = slots.try_acquire(live.smtp.max_connections) else {
            Refusal::Overloaded.send(stream, &sessions.masker, peer, None);
            continue;
        };
        let sessions = sessions.clone();
        let implicit_tls = listener.implicit_tls;
        sessions.shutdown.tracker().clone().spawn(async move {
            metrics::sessions(1);
            let admitted = match proxied {
                true => admit_proxied(stream, peer, &sessions).await,
                false => Some((stream, peer)),
            };
            if let Some((stream, client)) = admitted {
                serve(stream, client, sessions, implicit_tls).await;
            }
            metrics::sessions(-1);
            drop(permit);
        });
    }
}

/// A connection from a `proxy-trusted` peer: reads the PROXY header within
/// [`proxy::HEADER_TIMEOUT`] and checks its client against
/// `allowed-clients`. `None`: the connection was closed (no header: without
/// a greeting) or refused (`554 5.7.1`), and counted.
async fn admit_proxied(
    mut stream: TcpStream,
    peer: SocketAddr,
    sessions: &SessionContext,
) -> Option<(TcpStream, SocketAddr)> {
    let masker = &sessions.masker;
    match proxy::client(&mut stream, peer, proxy::HEADER_TIMEOUT).await {
        Ok(client) if sessions.reloadable.current().smtp.admits(client.ip()) => {
            tracing::debug!(client = %masker.ip(client.ip()), proxy = %masker.ip(peer.ip()), "PROXY header read");
            Some((stream, client))
        }
        Ok(client) => {
            Refusal::NotAllowed.send(stream, masker, client, Some(peer));
            None
        }
        Err(err) => {
            metrics::connection(err.label());
            if PROXY_HEADER_LOG.admit() {
                tracing::warn!(proxy = %masker.ip(peer.ip()), error = %err, "closed without a greeting");
            }
            None
        }
    }
}

/// An admitted connection becomes a session: counted `accepted` here, once,
/// when the session starts (after the handshake with implicit TLS, whose
/// failure counts the connection `tls_failed` instead).
async fn serve(
    stream: TcpStream,
    peer: SocketAddr,
    sessions: Arc<SessionContext>,
    implicit_tls: bool,
) {
    if !implicit_tls {
        metrics::connection("accepted");
        return Session::new(sessions, Box::new(stream), peer, false)
            .run()
            .await;
    }
    let live = sessions.reloadable.current();
    let Some(acceptor) = live.tls.clone() else {
        return;
    };
    let failed = match tokio::time::timeout(live.smtp.idle_timeout.0, acceptor.accept(stream)).await
    {
        Ok(Ok(tls)) => {
            metrics::connection("accepted");
            return Session::new(sessions, Box::new(tls), peer, true)
                .run()
                .await;
        }
        Ok(Err(err)) => err.to_string(),
        Err(_) => "no handshake within smtp.idle-timeout".to_string(),
    };
    metrics::connection("tls_failed");
    tls::failed(&sessions.masker, peer, TlsMode::Implicit, &failed);
}

/// Why a connection is refused before its session starts.
#[derive(Debug, Clone, Copy)]
enum Refusal {
    /// With PROXY on, a peer not in `proxy-trusted`.
    Untrusted,
    /// A client not in `allowed-clients`.
    NotAllowed,
    /// `max-connections` reached.
    Overloaded,
}

impl Refusal {
    /// The one refusal path: counted, logged within its throttle (an
    /// outsider can cause it by the thousand), answered and closed.
    /// `client` is the one refused; `proxy` the balancer it came through.
    fn send(
        self,
        stream: TcpStream,
        masker: &Masker,
        client: SocketAddr,
        proxy: Option<SocketAddr>,
    ) {
        let (label, log, reply) = match self {
            Refusal::Untrusted => ("denied", &UNTRUSTED_LOG, ACCESS_DENIED),
            Refusal::NotAllowed => ("denied", &DENIED_LOG, ACCESS_DENIED),
            Refusal::Overloaded => (
                "overloaded",
                &OVERLOADED_LOG,
                Reply::new(421, [4, 3, 2], "Too many connections, try again later"),
            ),
        };
        metrics::connection(label);
        if log.admit() {
            let client = masker.ip(client.ip());
            match (self, proxy) {
                (Refusal::Untrusted, _) => {
                    tracing::warn!(peer = %client, "peer not in proxy-trusted, refused")
                }
                (_, Some(proxy)) => tracing::warn!(
                    client = %client,
                    proxy = %masker.ip(proxy.ip()),
                    "{}",
                    log.what()
                ),
                (_, None) => tracing::warn!(client = %client, "{}", log.what()),
            }
        }
        refuse(stream, reply);
    }
}

const ACCESS_DENIED: Reply = Reply::new(554, [5, 7, 1], "Access denied: client not allowed");

/// Writes `reply` and closes, on a task of its own; counted like every
/// session reply (command `CONNECT`: it stands for the greeting).
pub fn refuse(mut stream: TcpStream, reply: Reply) {
    metrics::reply(reply.code, "CONNECT");
    tokio::spawn(async move {
        let mut wire = Vec::new();
        reply.write_to(&mut wire);
        let _ = tokio::time::timeout(REFUSAL_TIMEOUT, async {
            stream.write_all(&wire).await?;
            stream.shutdown().await
        })
        .await;
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mapped_ipv6_matches_ipv4_networks() {
        let allowed: Vec<IpNet> = ["10.99.0.0/16", "202.217.0.0/16", "::1/128"]
            .iter()
            .map(|n| n.parse().unwrap())
            .collect();
        assert!(is_allowed(&allowed, "10.99.1.11".parse().unwrap()));
        assert!(is_allowed(&allowed, "::ffff:10.99.1.11".parse().unwrap()));
        assert!(is_allowed(&allowed, "::1".parse().unwrap()));
        assert!(!is_allowed(&allowed, "10.98.0.1".parse().unwrap()));
        assert!(!is_allowed(&allowed, "::ffff:10.98.0.1".parse().unwrap()));
        assert!(!is_allowed(&allowed, "2001:db8::1".parse().unwrap()));
    }
}

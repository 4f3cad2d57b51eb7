//! The envelope of one SMTP transaction, and its id.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use crate::route::Route;

/// What the client said about one message, apart from its content.
#[derive(Debug, Clone)]
pub struct Envelope {
    /// Transaction id: in the Received header, the log line and the final reply.
    pub id: String,
    /// The client's address.
    pub client: SocketAddr,
    /// The name the client gave in EHLO/HELO.
    pub helo: String,
    /// Whether the session runs over TLS.
    pub tls: bool,
    /// EHLO (true) or HELO (false).
    pub esmtp: bool,
    /// MAIL FROM address; empty for the null sender (bounces).
    pub mail_from: String,
    /// Every accepted RCPT TO address, in order.
    pub rcpt_to: Vec<String>,
    /// MAIL FROM ... SMTPUTF8.
    pub smtputf8: bool,
    /// MAIL FROM ... SIZE=, 0 when not given.
    pub declared_size: usize,
    /// The route chosen at the first RCPT.
    pub route: Route,
}

/// Makes transaction ids: 16 hex digits, milliseconds since the epoch then a
/// counter, so ids sort by time and do not repeat across restarts.
#[derive(Debug, Default)]
pub struct TransactionIds {
    counter: AtomicU32,
}

impl TransactionIds {
    /// A fresh id.
    pub fn next(&self) -> String {
        let millis = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_millis() as u64)
            .unwrap_or(0);
        let n = self.counter.fetch_add(1, Ordering::Relaxed) & 0xF_FFFF;
        format!("{:011X}{n:05X}", millis & 0x7FF_FFFF_FFFF)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_unique_and_fixed_width() {
        let ids = TransactionIds::default();
        let a = ids.next();
        let b = ids.next();
        assert_ne!(a, b);
        assert_eq!(a.len(), 16);
        assert!(a.chars().all(|c| c.is_ascii_hexdigit()));
    }
}

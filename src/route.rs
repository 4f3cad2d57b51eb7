//! Routes: where a transaction goes, and the router that picks one.
//!
//! The route is picked at the first RCPT (a proxying route must know it before
//! it can pass RCPT on). Today every transaction takes the SES route; the
//! legacy route and the percentage split plug in here.

use std::fmt;
use std::sync::Arc;

use crate::forward::Forwarder;

/// Where a transaction is delivered.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Route {
    /// Amazon SES v2 API (or its dry-run outbox).
    Ses,
}

impl Route {
    /// The label used in logs and metrics.
    pub fn as_str(self) -> &'static str {
        match self {
            Route::Ses => "ses",
        }
    }
}

impl fmt::Display for Route {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Picks a route per transaction and holds each route's forwarder.
pub struct Router {
    ses: Arc<dyn Forwarder>,
}

impl Router {
    /// A router with the SES route's forwarder.
    pub fn new(ses: Arc<dyn Forwarder>) -> Router {
        Router { ses }
    }

    /// The route for a transaction, from what is known at its first RCPT.
    pub fn choose(&self, _client: std::net::IpAddr, _sender: &str, _first_rcpt: &str) -> Route {
        Route::Ses
    }

    /// The forwarder that delivers on `route`.
    pub fn forwarder(&self, route: Route) -> &Arc<dyn Forwarder> {
        match route {
            Route::Ses => &self.ses,
        }
    }
}

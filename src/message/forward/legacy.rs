//! The legacy route: a faithful SMTP proxy to the legacy relay (Postfix + Cuenote).
//!
//! A transaction routed here opens (or reuses) a connection at the client's
//! first RCPT, repeats MAIL, then passes each RCPT on and returns the legacy
//! relay's own reply, so ses-relay never accepts a recipient the legacy relay
//! refused and never has to bounce anything itself. After DATA the prepared
//! message goes out and the legacy relay's final reply is the client's.
//!
//! Connections are pooled (at most `max-connections`), reused across
//! transactions with an RSET that also proves them alive, and closed after
//! `idle-timeout`. Connection-level trouble (unreachable, greeting or EHLO
//! refused, TLS required but not offered, connection lost) is a `451`, so the
//! client retries; the legacy relay's own 4xx/5xx replies pass through as they are.

use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};

use mail_send::Credentials;
use mail_send::SmtpClient;
use smtp_proto::{EXT_8BIT_MIME, EXT_SIZE, EXT_SMTP_UTF8, EXT_START_TLS, Response};
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio_rustls::TlsConnector;

use super::{Accepted, BoxFuture, Transaction, Upstream, UpstreamError};
use crate::config::{LegacyConfig, LegacyTls};
use crate::connection::smtp::{Reply, dot_stuff};
use crate::connection::tls::{Io, TlsError};
use crate::log::LogThrottle;
use crate::message::envelope::{Envelope, MailFrom};

/// During an outage every transaction fails the same way: one line per
/// cause per 10 s, the next one saying how many were left out (the metric
/// `ses_relay_legacy_errors_total` counts each).
static CONNECT_LOG: LogThrottle = outage("legacy relay not reachable");
static TLS_LOG: LogThrottle = outage("legacy relay does not offer STARTTLS");
static AUTH_LOG: LogThrottle = outage("legacy relay AUTH failed");
static LOST_LOG: LogThrottle = outage("legacy relay connection lost");

const fn outage(what: &'static str) -> LogThrottle {
    LogThrottle::new(what, 1, Duration::from_secs(10))
}

/// Why the legacy forwarder could not be built.
#[derive(Debug, thiserror::Error)]
pub enum LegacySetupError {
    /// `legacy.ca-file` unusable.
    #[error("legacy.ca-file: {0}")]
    Tls(#[from] TlsError),
    /// `legacy.auth-password-file` unreadable.
    #[error("legacy.auth-password-file {path}: {source}")]
    Password {
        /// The file.
        path: std::path::PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
}

/// Why STARTTLS to the legacy relay failed.
#[derive(Debug, thiserror::Error)]
enum StartTlsError {
    #[error("{0}")]
    Smtp(#[from] mail_send::Error),
    #[error("{0} {1}")]
    Refused(u16, String),
    #[error("{0}")]
    Name(#[from] rustls::pki_types::InvalidDnsNameError),
    #[error("TLS handshake timed out")]
    Timeout,
    #[error("{0}")]
    Handshake(#[from] std::io::Error),
}

/// The reply when the connection to the legacy relay broke mid-transaction.
const LOST: Reply = Reply::new(
    451,
    [4, 4, 2],
    "Connection to the legacy relay lost, try again later",
);

/// Proxies transactions to the legacy relay.
pub struct LegacyForwarder {
    pool: Arc<Pool>,
}

struct Pool {
    relay: String,
    /// Host part of `relay`, the name TLS checks the certificate against.
    server_name: String,
    tls: LegacyTls,
    connector: Option<TlsConnector>,
    credentials: Option<Credentials<String>>,
    helo: String,
    idle_timeout: Duration,
    connect_timeout: Duration,
    command_timeout: Duration,
    slots: Arc<Semaphore>,
    idle: Mutex<Vec<Connection>>,
}

/// One SMTP connection to the legacy relay, holding its pool slot.
struct Connection {
    client: SmtpClient<Box<dyn Io>>,
    capabilities: u32,
    last_used: Instant,
    _slot: OwnedSemaphorePermit,
}

impl LegacyForwarder {
    /// Builds the pool; nothing connects until the first transaction.
    pub fn new(config: &LegacyConfig, helo: &str) -> Result<LegacyForwarder, LegacySetupError> {
        let connector = match config.tls {
            LegacyTls::None => None,
            LegacyTls::Opportunistic => Some(crate::connection::tls::client_connector(
                false,
                &config.ca_file,
            )?),
            LegacyTls::Required => Some(crate::connection::tls::client_connector(
                true,
                &config.ca_file,
            )?),
        };
        let credentials = if config.auth_user.is_empty() {
            None
        } else {
            let secret = std::fs::read_to_string(&config.auth_password_file).map_err(|source| {
                LegacySetupError::Password {
                    path: config.auth_password_file.clone(),
                    source,
                }
            })?;
            Some(Credentials::new(
                config.auth_user.clone(),
                secret.trim_end_matches(['\r', '\n']).to_string(),
            ))
        };
        let server_name = config
            .relay
            .rsplit_once(':')
            .map_or(config.relay.as_str(), |(host, _)| host)
            .trim_matches(['[', ']'])
            .to_string();
        let pool = Arc::new(Pool {
            relay: config.relay.clone(),
            server_name,
            tls: config.tls,
            connector,
            credentials,
            helo: helo.to_string(),
            idle_timeout: config.idle_timeout.0,
            connect_timeout: config.connect_timeout.0,
            command_timeout: config.command_timeout.0,
            slots: Arc::new(Semaphore::new(config.max_connections)),
            idle: Mutex::new(Vec::new()),
        });
        tokio::spawn(reap_idle(Arc::downgrade(&pool)));
        Ok(LegacyForwarder { pool })
    }
}

impl Pool {
    /// A live connection: a pooled one that answers RSET, or a new one.
    async fn checkout(self: &Arc<Self>) -> Result<Connection, UpstreamError> {
        loop {
            let candidate = self.idle.lock().unwrap_or_else(|p| p.into_inner()).pop();
            let Some(mut conn) = candidate else { break };
            if conn.last_used.elapsed() >= self.idle_timeout {
                continue; // dropped: closes the socket
            }
            if matches!(conn.client.cmd(b"RSET\r\n").await, Ok(r) if r.code == 250) {
                return Ok(conn);
            }
        }
        let slot = tokio::time::timeout(self.connect_timeout, self.slots.clone().acquire_owned())
            .await
            .map_err(|_| {
                crate::metrics::legacy_error("pool_full");
                UpstreamError::reply_of(Reply::new(
                    451,
                    [4, 4, 5],
                    "Legacy relay connection limit reached, try again later",
                ))
            })?
            .map_err(|_| {
                UpstreamError::reply_of(Reply::new(451, [4, 3, 0], "Legacy route closed"))
            })?;
        self.connect(slot).await
    }

    fn checkin(&self, mut conn: Connection) {
        conn.last_used = Instant::now();
        self.idle
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(conn);
    }

    async fn connect(&self, slot: OwnedSemaphorePermit) -> Result<Connection, UpstreamError> {
        let unreachable = |why: String| {
            crate::metrics::legacy_error("connect");
            if CONNECT_LOG.admit() {
                tracing::warn!(relay = %self.relay, "legacy relay: {why}");
            }
            UpstreamError::reply_of(Reply::new(
                451,
                [4, 4, 1],
                "Legacy relay not reachable, try again later",
            ))
        };
        let stream = tokio::time::timeout(self.connect_timeout, TcpStream::connect(&self.relay))
            .await
            .map_err(|_| unreachable("connect timed out".into()))?
            .map_err(|err| unreachable(format!("connect: {err}")))?;
        let _ = stream.set_nodelay(true);
        let mut client = SmtpClient {
            stream: Box::new(stream) as Box<dyn Io>,
            timeout: self.connect_timeout,
        };
        let greeting = tokio::time::timeout(self.connect_timeout, client.read())
            .await
            .map_err(|_| unreachable("no greeting".into()))?
            .map_err(|err| unreachable(format!("greeting: {err}")))?;
        if greeting.code != 220 {
            return Err(unreachable(format!(
                "greeting {} {}",
                greeting.code, greeting.message
            )));
        }
        let mut ehlo = client
            .ehlo(&self.helo)
            .await
            .map_err(|err| unreachable(format!("EHLO: {err}")))?;
        let offers_tls = ehlo.has_capability(EXT_START_TLS);
        if let Some(connector) = &self.connector
            && (offers_tls || self.tls == LegacyTls::Required)
        {
            if !offers_tls {
                crate::metrics::legacy_error("tls");
                if TLS_LOG.admit() {
                    tracing::warn!(relay = %self.relay, "legacy relay does not offer STARTTLS (legacy.tls = required)");
                }
                return Err(UpstreamError::reply_of(Reply::new(
                    451,
                    [4, 7, 4],
                    "Legacy relay does not offer STARTTLS",
                )));
            }
            client = self
                .start_tls(client, connector)
                .await
                .map_err(|err| unreachable(format!("STARTTLS: {err}")))?;
            ehlo = client
                .ehlo(&self.helo)
                .await
                .map_err(|err| unreachable(format!("EHLO after STARTTLS: {err}")))?;
        }
        if let Some(credentials) = &self.credentials {
            client
                .authenticate(credentials, &ehlo)
                .await
                .map_err(|err| {
                    crate::metrics::legacy_error("auth");
                    if AUTH_LOG.admit() {
                        tracing::warn!(relay = %self.relay, error = %err, "legacy relay AUTH failed");
                    }
                    UpstreamError::reply_of(Reply::new(
                        451,
                        [4, 7, 0],
                        "Cannot authenticate to the legacy relay, try again later",
                    ))
                })?;
        }
        client.timeout = self.command_timeout;
        Ok(Connection {
            client,
            capabilities: ehlo.capabilities(),
            last_used: Instant::now(),
            _slot: slot,
        })
    }

    async fn start_tls(
        &self,
        mut client: SmtpClient<Box<dyn Io>>,
        connector: &TlsConnector,
    ) -> Result<SmtpClient<Box<dyn Io>>, StartTlsError> {
        let reply = client.cmd(b"STARTTLS\r\n").await?;
        if reply.code != 220 {
            return Err(StartTlsError::Refused(reply.code, reply.message));
        }
        let name = rustls::pki_types::ServerName::try_from(self.server_name.clone())?;
        let SmtpClient { stream, timeout } = client;
        let tls = tokio::time::timeout(self.connect_timeout, connector.connect(name, stream))
            .await
            .map_err(|_| StartTlsError::Timeout)??;
        Ok(SmtpClient {
            stream: Box::new(tls),
            timeout,
        })
    }
}

/// Closes connections idle past `idle-timeout`, until the pool is gone.
async fn reap_idle(pool: Weak<Pool>) {
    loop {
        let period = match pool.upgrade() {
            Some(pool) => (pool.idle_timeout / 2).max(Duration::from_millis(100)),
            None => return,
        };
        tokio::time::sleep(period).await;
        let Some(pool) = pool.upgrade() else { return };
        let timeout = pool.idle_timeout;
        pool.idle
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .retain(|conn| conn.last_used.elapsed() < timeout);
    }
}

/// The legacy relay's reply as the client's reply; a missing enhanced code
/// gets the class's generic one.
fn pass_through(response: &Response<String>) -> Reply {
    match response.code {
        400..=499 => crate::metrics::legacy_error("reply_4xx"),
        500..=599 => crate::metrics::legacy_error("reply_5xx"),
        _ => {}
    }
    let [class, subject, detail] = response.esc;
    let status = if class == 0 {
        [response.code / 100, 0, 0]
    } else {
        [u16::from(class), u16::from(subject), u16::from(detail)]
    };
    let code = if (200..600).contains(&response.code) {
        response.code
    } else {
        451
    };
    Reply::dynamic(code, status, response.message.replace('\n', " "))
}

fn connection_lost(err: mail_send::Error) -> Reply {
    crate::metrics::legacy_error("lost");
    if LOST_LOG.admit() {
        tracing::warn!(error = %err, "legacy relay connection lost");
    }
    LOST
}

/// A transaction open on the legacy relay.
struct LegacyTransaction {
    pool: Arc<Pool>,
    conn: Option<Connection>,
}

impl Drop for LegacyTransaction {
    fn drop(&mut self) {
        // An aborted transaction: the connection goes back; the RSET at its next checkout clears it.
        if let Some(conn) = self.conn.take() {
            self.pool.checkin(conn);
        }
    }
}

impl Transaction for LegacyTransaction {
    fn recipient<'a>(&'a mut self, address: &'a str) -> BoxFuture<'a, Reply> {
        Box::pin(async move {
            let Some(conn) = self.conn.as_mut() else {
                return LOST;
            };
            match conn.client.cmd(format!("RCPT TO:<{address}>\r\n")).await {
                Ok(response) => pass_through(&response),
                Err(err) => {
                    self.conn = None;
                    connection_lost(err)
                }
            }
        })
    }

    fn data<'a>(
        mut self: Box<Self>,
        _envelope: &'a Envelope,
        message: Vec<u8>,
    ) -> BoxFuture<'a, Result<Accepted, UpstreamError>> {
        Box::pin(async move {
            let reply = self.send(message).await;
            if reply.is_positive() {
                Ok(Accepted::passed(reply))
            } else {
                Err(UpstreamError::reply_of(reply))
            }
        })
    }
}

impl LegacyTransaction {
    /// DATA, the message, and the legacy relay's final reply.
    async fn send(&mut self, message: Vec<u8>) -> Reply {
        let Some(mut conn) = self.conn.take() else {
            return LOST;
        };
        let start = match conn.client.cmd(b"DATA\r\n").await {
            Ok(response) => response,
            Err(err) => return connection_lost(err),
        };
        if start.code != 354 {
            self.pool.checkin(conn);
            return pass_through(&start);
        }
        let wire = dot_stuff(&message);
        drop(message);
        let timeout = conn.client.timeout;
        let sent = tokio::time::timeout(timeout, async {
            conn.client.stream.write_all(&wire).await?;
            conn.client.stream.flush().await?;
            conn.client
                .read()
                .await
                .map_err(|e| std::io::Error::other(e.to_string()))
        })
        .await;
        match sent {
            Ok(Ok(response)) => {
                self.pool.checkin(conn);
                pass_through(&response)
            }
            Ok(Err(err)) => connection_lost(mail_send::Error::Io(err)),
            Err(_) => connection_lost(mail_send::Error::Timeout),
        }
    }
}

impl Upstream for LegacyForwarder {
    fn begin<'a>(
        self: Arc<Self>,
        mail: &'a MailFrom,
    ) -> BoxFuture<'a, Result<Box<dyn Transaction>, UpstreamError>> {
        Box::pin(async move {
            let mut conn = self.pool.checkout().await?;
            let mut command = format!("MAIL FROM:<{}>", mail.address);
            if mail.size > 0 && conn.capabilities & EXT_SIZE != 0 {
                command.push_str(&format!(" SIZE={}", mail.size));
            }
            if mail.body_8bit && conn.capabilities & EXT_8BIT_MIME != 0 {
                command.push_str(" BODY=8BITMIME");
            }
            if mail.smtputf8 && conn.capabilities & EXT_SMTP_UTF8 != 0 {
                command.push_str(" SMTPUTF8");
            }
            command.push_str("\r\n");
            let response = match conn.client.cmd(command).await {
                Ok(response) => response,
                Err(err) => return Err(UpstreamError::reply_of(connection_lost(err))),
            };
            if response.code != 250 {
                self.pool.checkin(conn);
                return Err(UpstreamError::reply_of(pass_through(&response)));
            }
            Ok(Box::new(LegacyTransaction {
                pool: self.pool.clone(),
                conn: Some(conn),
            }) as Box<dyn Transaction>)
        })
    }
}

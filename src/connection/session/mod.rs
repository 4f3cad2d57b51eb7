//! One SMTP connection: its state machine, reads with limits, and the one
//! place replies leave (`Session::write_reply`).
//!
//! Replies to pipelined commands are collected and written when the input
//! buffer runs dry (RFC 2920), and at once before anything that waits
//! (DATA's 354, STARTTLS, delivery).

mod commands;
mod context;
mod data;
mod outcome;
#[cfg(test)]
mod tests;

use std::net::SocketAddr;
use std::sync::Arc;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::time::Instant;

use crate::connection::smtp::{Input, MessageReceiver, Reply};
use crate::connection::tls::Io;
use crate::connection::tls::{self, TlsMode};
use crate::daemon::state::Reloadable;
use crate::message::envelope::{Envelope, MailFrom};
use crate::message::forward::Transaction;
use crate::message::route::Route;
use crate::metrics;

pub use context::SessionContext;

/// Bad commands tolerated before the session is ended (Postfix's hard error limit is 20).
const MAX_ERRORS: u32 = 10;

/// Where the session stands.
enum State {
    /// Greeted; no EHLO/HELO yet (also right after STARTTLS, RFC 3207 section 4.2).
    Fresh,
    /// EHLO/HELO done, no transaction.
    Ready,
    /// MAIL accepted; recipients accumulate.
    Mail(MailTransaction),
    /// Receiving the message after DATA (oversize data is discarded inside the receiver).
    Data(OpenTransaction, MessageReceiver),
}

/// A transaction between MAIL and DATA.
struct MailTransaction {
    id: String,
    mail: MailFrom,
    rcpt_to: Vec<String>,
    /// RCPTs answered with anything but 2xx.
    rcpts_refused: usize,
    /// The route's side.
    upstream: RouteSide,
}

/// The route's side of a transaction, decided at the first RCPT.
enum RouteSide {
    /// No recipient has reached the route choice yet.
    Undecided,
    /// The route is chosen, its transaction not begun: a recipient was
    /// refused before (SES and a non-ASCII address), or beginning failed
    /// (`begin_failed`: counted once as a deferred transaction; later RCPTs
    /// try again but are not counted again).
    Chosen { route: Route, begin_failed: bool },
    /// Begun on its route; every accepted recipient went through it.
    Open(Route, Box<dyn Transaction>),
}

impl RouteSide {
    /// The route, once chosen.
    fn route(&self) -> Option<Route> {
        match self {
            RouteSide::Undecided => None,
            RouteSide::Chosen { route, .. } | RouteSide::Open(route, _) => Some(*route),
        }
    }
}

/// A transaction in DATA: at least one recipient, accepted through its
/// route's open transaction.
struct OpenTransaction {
    id: String,
    mail: MailFrom,
    rcpt_to: Vec<String>,
    route: Route,
    upstream: Box<dyn Transaction>,
}

/// What the session loop does next.
#[derive(Debug, PartialEq, Eq)]
enum Flow {
    Continue,
    StartTls,
    Close,
}

/// How a read ended.
enum ReadOutcome {
    Data,
    Closed,
    TimedOut,
    ShuttingDown,
}

/// One SMTP connection.
pub struct Session {
    context: Arc<SessionContext>,
    /// The reloadable config as it was when the session started.
    live: Arc<Reloadable>,
    io: Box<dyn Io>,
    peer: SocketAddr,
    input: Input,
    output: Vec<u8>,
    state: State,
    helo: String,
    esmtp: bool,
    tls: bool,
    errors: u32,
    deadline: Instant,
    /// The relay's reload count when admission was last checked.
    generation: u64,
}

impl Session {
    /// A session on `io` from `peer`; `tls` when the stream is already TLS (implicit TLS).
    pub fn new(
        context: Arc<SessionContext>,
        io: Box<dyn Io>,
        peer: SocketAddr,
        tls: bool,
    ) -> Session {
        let generation = context.reloadable.generation();
        let live = context.reloadable.current();
        let deadline = Instant::now() + live.smtp.max_session_duration.0;
        Session {
            context,
            live,
            io,
            peer,
            input: Input::new(),
            output: Vec::with_capacity(1024),
            state: State::Fresh,
            helo: String::new(),
            esmtp: false,
            tls,
            errors: 0,
            deadline,
            generation,
        }
    }

    /// Runs the session to its end.
    pub async fn run(mut self) {
        let greeting = Reply::plain(220, format!("{} ESMTP ses-relay", self.live.smtp.hostname));
        self.write_reply(greeting, "CONNECT");
        loop {
            let flow = self.process().await;
            if !self.flush().await {
                return;
            }
            match flow {
                Flow::Continue => {}
                Flow::Close => return self.close().await,
                Flow::StartTls => {
                    if !self.start_tls().await {
                        return;
                    }
                    continue;
                }
            }
            match self.read().await {
                ReadOutcome::Data => {}
                ReadOutcome::Closed => return,
                ReadOutcome::TimedOut => {
                    // The read is bounded by both limits: say which one cut it.
                    let text = if Instant::now() >= self.deadline {
                        "Session time limit exceeded, closing connection"
                    } else {
                        "Idle timeout, closing connection"
                    };
                    self.write_reply(Reply::new(421, [4, 4, 2], text), "TIMEOUT");
                    return self.close().await;
                }
                ReadOutcome::ShuttingDown => {
                    self.write_reply(
                        Reply::new(421, [4, 3, 0], "Service shutting down, try again later"),
                        "SHUTDOWN",
                    );
                    return self.close().await;
                }
            }
        }
    }

    /// Handles everything buffered: commands, or message data in the DATA state.
    async fn process(&mut self) -> Flow {
        loop {
            if let State::Data(_, receiver) = &mut self.state {
                match self.input.feed(receiver) {
                    crate::connection::smtp::DataEnd::Pending => return Flow::Continue,
                    end => {
                        self.end_of_data(end).await;
                        continue;
                    }
                }
            }
            let Some(command) = self.input.next_command() else {
                return Flow::Continue;
            };
            if !self.still_admitted() {
                self.write_reply(
                    Reply::new(
                        421,
                        [4, 7, 1],
                        "Client no longer allowed, closing connection",
                    ),
                    "ADMISSION",
                );
                return Flow::Close;
            }
            let flow = self.handle(command).await;
            if flow != Flow::Continue {
                return flow;
            }
            if self.errors >= MAX_ERRORS {
                self.write_reply(
                    Reply::new(421, [4, 7, 0], "Too many errors, closing connection"),
                    "ERRORS",
                );
                return Flow::Close;
            }
        }
    }

    /// Whether the client is still in `allowed-clients` after a reload (checked
    /// before each command: a transaction already in DATA finishes first).
    fn still_admitted(&mut self) -> bool {
        let now = self.context.reloadable.generation();
        if now == self.generation {
            return true;
        }
        self.generation = now;
        self.context
            .reloadable
            .current()
            .smtp
            .admits(self.peer.ip())
    }

    /// Reads more input, bounded by the idle timeout and the session deadline.
    /// Outside a transaction, shutdown interrupts the wait.
    async fn read(&mut self) -> ReadOutcome {
        let until = (Instant::now() + self.live.smtp.idle_timeout.0).min(self.deadline);
        let in_transaction = matches!(self.state, State::Mail(_) | State::Data(..));
        if !in_transaction && self.context.shutdown.is_triggered() {
            return ReadOutcome::ShuttingDown;
        }
        tokio::select! {
            biased;
            _ = self.context.shutdown.triggered(), if !in_transaction => ReadOutcome::ShuttingDown,
            read = tokio::time::timeout_at(until, self.io.read_buf(self.input.for_read())) => match read {
                Err(_) => ReadOutcome::TimedOut,
                Ok(Ok(0)) | Ok(Err(_)) => ReadOutcome::Closed,
                Ok(Ok(_)) => ReadOutcome::Data,
            },
        }
    }

    /// Queues a reply; every reply leaves through here and is counted.
    fn write_reply(&mut self, reply: Reply, command: &'static str) {
        metrics::reply(reply.code, command);
        reply.write_to(&mut self.output);
    }

    /// Writes queued replies; false when the client is gone.
    async fn flush(&mut self) -> bool {
        if self.output.is_empty() {
            return true;
        }
        let idle = self.live.smtp.idle_timeout.0;
        let written = tokio::time::timeout(idle, async {
            self.io.write_all(&self.output).await?;
            self.io.flush().await
        })
        .await;
        self.output.clear();
        matches!(written, Ok(Ok(())))
    }

    async fn close(&mut self) {
        self.flush().await;
        let _ = tokio::time::timeout(std::time::Duration::from_secs(1), self.io.shutdown()).await;
    }

    /// Upgrades the stream after `220 Ready to start TLS`.
    async fn start_tls(&mut self) -> bool {
        let Some(acceptor) = self.live.tls.clone() else {
            return false;
        };
        let plain = std::mem::replace(
            &mut self.io,
            Box::new(tokio::io::join(tokio::io::empty(), tokio::io::sink())),
        );
        match tokio::time::timeout(self.live.smtp.idle_timeout.0, acceptor.accept(plain)).await {
            Ok(Ok(stream)) => {
                self.io = Box::new(stream);
                self.tls = true;
                // RFC 3207 section 4.2: forget everything learned before TLS.
                self.state = State::Fresh;
                self.helo.clear();
                self.esmtp = false;
                self.input.clear();
                true
            }
            Ok(Err(err)) => {
                tls::failed(&self.context.masker, self.peer, TlsMode::StartTls, &err);
                false
            }
            Err(_) => {
                let timed_out = "no STARTTLS handshake within smtp.idle-timeout";
                tls::failed(
                    &self.context.masker,
                    self.peer,
                    TlsMode::StartTls,
                    &timed_out,
                );
                false
            }
        }
    }

    /// The envelope of a transaction in DATA, and the route's side of it.
    fn envelope(&self, tx: OpenTransaction) -> (Envelope, Box<dyn Transaction>) {
        let envelope = Envelope {
            id: tx.id,
            client: self.peer,
            helo: self.helo.clone(),
            tls: self.tls,
            esmtp: self.esmtp,
            mail: tx.mail,
            rcpt_to: tx.rcpt_to,
            route: tx.route,
            tags: Vec::new(),
        };
        (envelope, tx.upstream)
    }
}

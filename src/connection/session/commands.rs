//! One handler per SMTP command.

use smtp_proto::{
    MAIL_BODY_8BITMIME, MAIL_BODY_BINARYMIME, MAIL_SMTPUTF8, MailFrom, RcptTo, Request,
};

use std::time::Duration;

use super::outcome::{Outcome, Recorder};
use super::{Flow, MailTransaction, OpenTransaction, RouteSide, Session, State};
use crate::connection::smtp::{Command, MessageReceiver, Reply};
use crate::message::envelope::{Envelope, MailFrom as Mail};
use crate::message::route::Route;

const OK: Reply = Reply::new(250, [2, 0, 0], "Ok");
const BAD_SEQUENCE_HELO: Reply = Reply::new(503, [5, 5, 1], "Send EHLO or HELO first");

impl Session {
    /// Dispatches one framed command.
    pub(super) async fn handle(&mut self, command: Command) -> Flow {
        let request = match command {
            Command::Request(request) => request,
            Command::TooLong => {
                return self.error(Reply::new(500, [5, 5, 2], "Line too long"), "LONG");
            }
            Command::Invalid(err) => return self.error(invalid_reply(err), "INVALID"),
            Command::Refused(refusal) => return self.error(refusal.reply, refusal.command),
        };
        match request {
            Request::Ehlo { host } => self.handle_ehlo(host, true),
            Request::Helo { host } => self.handle_ehlo(host, false),
            Request::Mail { from } => self.handle_mail(from),
            Request::Rcpt { to } => self.handle_rcpt(to).await,
            Request::Data => self.handle_data(),
            Request::Rset => self.handle_rset(),
            Request::Noop { .. } => self.ok(OK, "NOOP"),
            Request::Quit => {
                self.write_reply(Reply::new(221, [2, 0, 0], "Bye"), "QUIT");
                Flow::Close
            }
            Request::Vrfy { .. } => self.ok(
                Reply::new(
                    252,
                    [2, 5, 2],
                    "Cannot VRFY user, but will accept message and attempt delivery",
                ),
                "VRFY",
            ),
            Request::Help { .. } => self.ok(
                Reply::new(
                    214,
                    [2, 0, 0],
                    "Commands: EHLO HELO MAIL RCPT DATA RSET NOOP QUIT VRFY HELP STARTTLS",
                ),
                "HELP",
            ),
            Request::StartTls => self.handle_starttls(),
            Request::Bdat { .. } => self.error(
                Reply::new(502, [5, 5, 1], "CHUNKING is not offered, use DATA"),
                "BDAT",
            ),
            Request::Auth { .. } => self.error(
                Reply::new(
                    502,
                    [5, 5, 1],
                    "AUTH is not offered: clients are admitted by network",
                ),
                "AUTH",
            ),
            other => self.error(
                Reply::new(502, [5, 5, 1], "Command not implemented"),
                other.name(),
            ),
        }
    }

    fn ok(&mut self, reply: Reply, command: &'static str) -> Flow {
        self.write_reply(reply, command);
        Flow::Continue
    }

    /// Replies to a client mistake and counts it toward [`super::MAX_ERRORS`].
    fn error(&mut self, reply: Reply, command: &'static str) -> Flow {
        self.errors += 1;
        self.write_reply(reply, command);
        Flow::Continue
    }

    fn handle_ehlo(&mut self, host: String, esmtp: bool) -> Flow {
        self.helo = host;
        self.esmtp = esmtp;
        self.state = State::Ready;
        let smtp = &self.live.smtp;
        if !esmtp {
            return self.ok(Reply::plain(250, smtp.hostname.clone()), "HELO");
        }
        let mut text = format!(
            "{}\nPIPELINING\nSIZE {}\n8BITMIME\nSMTPUTF8\nENHANCEDSTATUSCODES",
            smtp.hostname, smtp.max_message_size.0
        );
        if self.live.tls.is_some() && !self.tls {
            text.push_str("\nSTARTTLS");
        }
        self.ok(Reply::plain(250, text), "EHLO")
    }

    fn handle_mail(&mut self, from: MailFrom<String>) -> Flow {
        match self.state {
            State::Fresh => return self.error(BAD_SEQUENCE_HELO, "MAIL"),
            State::Mail(_) | State::Data(..) => {
                return self.error(Reply::new(503, [5, 5, 1], "Nested MAIL command"), "MAIL");
            }
            State::Ready => {}
        }
        if self.context.shutdown.is_triggered() {
            self.write_reply(
                Reply::new(421, [4, 3, 0], "Service shutting down, try again later"),
                "MAIL",
            );
            return Flow::Close;
        }
        if self.live.smtp.require_tls && !self.tls {
            return self.error(
                Reply::new(530, [5, 7, 0], "Must issue a STARTTLS command first"),
                "MAIL",
            );
        }
        let limit = self.live.smtp.max_message_size.0;
        if from.size as u64 > limit {
            return self.ok(
                Reply::new(
                    552,
                    [5, 3, 4],
                    "Message size exceeds fixed maximum message size",
                ),
                "MAIL",
            );
        }
        if from.flags & MAIL_BODY_BINARYMIME != 0 {
            return self.error(
                Reply::new(555, [5, 5, 4], "BODY=BINARYMIME is not offered"),
                "MAIL",
            );
        }
        if !from.address.is_empty() && !is_mailbox(&from.address) {
            return self.error(
                Reply::new(501, [5, 1, 7], "Bad sender address syntax"),
                "MAIL",
            );
        }
        if !from.address.is_ascii() && from.flags & MAIL_SMTPUTF8 == 0 {
            return self.error(
                Reply::new(
                    553,
                    [5, 6, 7],
                    "Non-ASCII address needs MAIL FROM with SMTPUTF8",
                ),
                "MAIL",
            );
        }
        self.state = State::Mail(MailTransaction {
            id: self.context.ids.next(),
            mail: Mail {
                smtputf8: from.flags & MAIL_SMTPUTF8 != 0,
                body_8bit: from.flags & MAIL_BODY_8BITMIME != 0,
                size: from.size,
                address: from.address,
            },
            rcpt_to: Vec::new(),
            rcpts_refused: 0,
            upstream: RouteSide::Undecided,
        });
        self.ok(Reply::new(250, [2, 1, 0], "Ok"), "MAIL")
    }

    async fn handle_rcpt(&mut self, to: RcptTo<String>) -> Flow {
        let reply = self.rcpt_reply(to).await;
        if let State::Mail(tx) = &mut self.state
            && !matches!(&reply, Ok(r) if r.is_positive())
        {
            tx.rcpts_refused += 1;
        }
        match reply {
            Ok(reply) => self.ok(reply, "RCPT"),
            Err(reply) => self.error(reply, "RCPT"),
        }
    }

    /// The reply to one RCPT: `Err` for a client mistake (counted), `Ok` otherwise,
    /// including a proxied upstream's refusal, which is the upstream's to make.
    async fn rcpt_reply(&mut self, to: RcptTo<String>) -> Result<Reply, Reply> {
        let max = self.live.smtp.max_recipients;
        let client = self.peer.ip();
        let context = self.context.clone();
        let State::Mail(tx) = &mut self.state else {
            return Err(Reply::new(503, [5, 5, 1], "Need MAIL command first"));
        };
        if !is_mailbox(&to.address) {
            return Err(Reply::new(501, [5, 1, 3], "Bad recipient address syntax"));
        }
        if !to.address.is_ascii() && !tx.mail.smtputf8 {
            return Ok(Reply::new(
                553,
                [5, 6, 7],
                "Non-ASCII address needs MAIL FROM with SMTPUTF8",
            ));
        }
        if tx.rcpt_to.len() >= max {
            // Postfix sends the rest in another transaction.
            return Ok(Reply::new(452, [4, 5, 3], "Too many recipients"));
        }
        let side = std::mem::replace(&mut tx.upstream, RouteSide::Undecided);
        let route = side
            .route()
            .unwrap_or_else(|| context.router.choose(client, &tx.mail.address, &to.address));
        // SES does not deliver SMTPUTF8 addresses; with a legacy route the
        // router sent such a transaction there, unless only a later recipient is.
        if route == Route::Ses && !(to.address.is_ascii() && tx.mail.address.is_ascii()) {
            tx.upstream = match side {
                RouteSide::Undecided => RouteSide::Chosen {
                    route,
                    begin_failed: false,
                },
                side => side,
            };
            return Ok(Reply::new(
                553,
                [5, 6, 7],
                "SES does not deliver internationalized (non-ASCII) addresses",
            ));
        }
        let begin_failed = matches!(
            side,
            RouteSide::Chosen {
                begin_failed: true,
                ..
            }
        );
        let mut upstream = match side {
            RouteSide::Open(_, upstream) => upstream,
            RouteSide::Undecided | RouteSide::Chosen { .. } => {
                match context.upstreams.get(route).begin(&tx.mail).await {
                    Ok(upstream) => upstream,
                    Err(err) => {
                        tx.upstream = RouteSide::Chosen {
                            route,
                            begin_failed: true,
                        };
                        // The route is down (legacy relay unreachable): Postfix will
                        // give up on this transaction without DATA, so it is counted
                        // and logged here, once per transaction, or an outage would
                        // never reach the success ratio and its alerts.
                        let reply = err.reply();
                        if !begin_failed {
                            let envelope = Envelope {
                                id: tx.id.clone(),
                                client: self.peer,
                                helo: self.helo.clone(),
                                tls: self.tls,
                                esmtp: self.esmtp,
                                mail: tx.mail.clone(),
                                rcpt_to: vec![to.address.clone()],
                                route,
                                tags: Vec::new(),
                            };
                            Recorder::of(&context).record(
                                &envelope,
                                &Outcome::not_begun(err),
                                Duration::ZERO,
                            );
                        }
                        return Ok(reply);
                    }
                }
            }
        };
        let reply = upstream.recipient(&to.address).await;
        tx.upstream = RouteSide::Open(route, upstream);
        if reply.is_positive() {
            tx.rcpt_to.push(to.address);
        }
        Ok(reply)
    }

    fn handle_data(&mut self) -> Flow {
        let tx = match std::mem::replace(&mut self.state, State::Ready) {
            State::Mail(MailTransaction {
                id,
                mail,
                rcpt_to,
                upstream: RouteSide::Open(route, upstream),
                ..
            }) if !rcpt_to.is_empty() => OpenTransaction {
                id,
                mail,
                rcpt_to,
                route,
                upstream,
            },
            State::Mail(tx) => {
                let reply = Reply::new(554, [5, 5, 1], "No valid recipients");
                // A DATA pipelined behind refused recipients (RFC 2920) is no new
                // mistake: the refusals were answered, and counted if the client's.
                // During a legacy outage every RCPT gets 451; counting the DATA too
                // would cut Postfix's cached connections every few transactions.
                let pipelined = tx.rcpts_refused > 0;
                self.state = State::Mail(tx);
                if pipelined {
                    return self.ok(reply, "DATA");
                }
                return self.error(reply, "DATA");
            }
            other => {
                let fresh = matches!(other, State::Fresh);
                self.state = other;
                let reply = if fresh {
                    BAD_SEQUENCE_HELO
                } else {
                    Reply::new(503, [5, 5, 1], "Need RCPT command first")
                };
                return self.error(reply, "DATA");
            }
        };
        let limit = self.live.smtp.max_message_size.as_usize();
        let receiver = MessageReceiver::with_memory(
            limit,
            tx.mail.size,
            self.context.reloadable.data_memory().clone(),
        );
        self.state = State::Data(tx, receiver);
        self.write_reply(Reply::plain(354, "End data with <CR><LF>.<CR><LF>"), "DATA");
        Flow::Continue
    }

    fn handle_rset(&mut self) -> Flow {
        if !matches!(self.state, State::Fresh) {
            self.state = State::Ready;
        }
        self.ok(OK, "RSET")
    }

    fn handle_starttls(&mut self) -> Flow {
        if self.tls {
            return self.error(Reply::new(503, [5, 5, 1], "TLS already active"), "STARTTLS");
        }
        if self.live.tls.is_none() {
            return self.error(
                Reply::new(502, [5, 5, 1], "STARTTLS is not offered"),
                "STARTTLS",
            );
        }
        self.write_reply(Reply::new(220, [2, 0, 0], "Ready to start TLS"), "STARTTLS");
        Flow::StartTls
    }
}

/// `local@domain` with both parts present.
fn is_mailbox(address: &str) -> bool {
    matches!(address.rsplit_once('@'), Some((local, domain)) if !local.is_empty() && !domain.is_empty())
}

/// The reply for a line smtp-proto could not parse.
fn invalid_reply(err: smtp_proto::Error) -> Reply {
    use smtp_proto::Error;
    match err {
        Error::UnknownCommand => Reply::new(500, [5, 5, 1], "Command unrecognized"),
        Error::InvalidSenderAddress => Reply::new(501, [5, 1, 7], "Bad sender address syntax"),
        Error::InvalidRecipientAddress => {
            Reply::new(501, [5, 1, 3], "Bad recipient address syntax")
        }
        Error::SyntaxError { syntax } => {
            Reply::dynamic(501, [5, 5, 4], format!("Syntax: {syntax}"))
        }
        Error::InvalidParameter { param } => {
            Reply::dynamic(501, [5, 5, 4], format!("Invalid parameter {param}"))
        }
        Error::UnsupportedParameter { param } => {
            Reply::dynamic(555, [5, 5, 4], format!("Unsupported parameter {param}"))
        }
        Error::ResponseTooLong => Reply::new(500, [5, 5, 2], "Line too long"),
        Error::NeedsMoreData { .. } | Error::InvalidResponse { .. } => {
            Reply::new(500, [5, 5, 2], "Syntax error")
        }
    }
}

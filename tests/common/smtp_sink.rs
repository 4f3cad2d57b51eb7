//! An in-process SMTP server standing in for the legacy relay: it records
//! each message, refuses recipients whose local part starts with `reject`
//! (550 5.1.1) or `defer` (450 4.2.0), answers 451 4.3.0 to the end of DATA
//! when the sender's local part starts with `defer-data` (and keeps nothing),
//! and counts connections, so tests can see what the proxy passed on and how
//! it reuses connections.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpListener;

/// A message the sink accepted.
#[derive(Debug, Clone)]
pub struct Received {
    pub mail_from: String,
    /// The MAIL command's parameters as sent (`SIZE=…`, `BODY=8BITMIME`).
    pub mail_parameters: String,
    pub rcpt_to: Vec<String>,
    pub data: Vec<u8>,
    /// Whether it came over TLS (after STARTTLS).
    pub tls: bool,
    /// The AUTH identity the client authenticated as, if any.
    pub auth: Option<String>,
}

/// Optional features: STARTTLS with this acceptor, AUTH PLAIN with this user and password.
#[derive(Clone, Default)]
pub struct Features {
    pub tls: Option<tokio_rustls::TlsAcceptor>,
    pub auth: Option<(String, String)>,
    /// Leave 8BITMIME out of the EHLO answer (a relay that does not offer it).
    pub without_8bitmime: bool,
}

#[derive(Default)]
struct State {
    messages: Mutex<Vec<Received>>,
    connections: AtomicUsize,
    rsets: AtomicUsize,
}

/// The running sink.
pub struct SmtpSink {
    pub addr: SocketAddr,
    state: Arc<State>,
}

impl SmtpSink {
    pub async fn start() -> SmtpSink {
        Self::start_with(Features::default()).await
    }

    pub async fn start_with(features: Features) -> SmtpSink {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let state = Arc::new(State::default());
        let shared = state.clone();
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                shared.connections.fetch_add(1, Ordering::Relaxed);
                let features = features.clone();
                let shared = shared.clone();
                tokio::spawn(async move {
                    let _ = stream.set_nodelay(true);
                    serve(Box::new(stream), shared, features, false).await
                });
            }
        });
        SmtpSink { addr, state }
    }

    pub fn messages(&self) -> Vec<Received> {
        self.state.messages.lock().unwrap().clone()
    }

    pub fn connections(&self) -> usize {
        self.state.connections.load(Ordering::Relaxed)
    }

    pub fn rsets(&self) -> usize {
        self.state.rsets.load(Ordering::Relaxed)
    }
}

trait Io: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send {}
impl<T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send> Io for T {}

async fn serve(stream: Box<dyn Io>, state: Arc<State>, features: Features, tls: bool) {
    let (read, mut write) = tokio::io::split(stream);
    let mut lines = BufReader::new(read);
    if !tls {
        let _ = write.write_all(b"220 legacy.test ESMTP sink\r\n").await;
    }
    let mut auth: Option<String> = None;
    let mut from = String::new();
    let mut parameters = String::new();
    let mut rcpts = Vec::new();
    let mut line = String::new();
    loop {
        line.clear();
        match lines.read_line(&mut line).await {
            Ok(0) | Err(_) => return,
            Ok(_) => {}
        }
        let upper = line.to_ascii_uppercase();
        let reply: String = if upper.starts_with("EHLO") {
            let mut ehlo = "250-legacy.test\r\n250-PIPELINING\r\n250-SIZE 52428800\r\n".to_string();
            if !features.without_8bitmime {
                ehlo.push_str("250-8BITMIME\r\n");
            }
            if features.tls.is_some() && !tls {
                ehlo.push_str("250-STARTTLS\r\n");
            }
            if features.auth.is_some() {
                ehlo.push_str("250-AUTH PLAIN\r\n");
            }
            ehlo + "250 ENHANCEDSTATUSCODES\r\n"
        } else if upper.starts_with("STARTTLS") && !tls && features.tls.is_some() {
            if write
                .write_all(b"220 2.0.0 Ready to start TLS\r\n")
                .await
                .is_err()
            {
                return;
            }
            let stream = lines.into_inner().unsplit(write);
            let acceptor = features.tls.clone().unwrap();
            let Ok(tls_stream) = acceptor.accept(stream).await else {
                return;
            };
            return Box::pin(serve(Box::new(tls_stream), state, features, true)).await;
        } else if upper.starts_with("AUTH PLAIN ") {
            use base64::Engine;
            let decoded = base64::engine::general_purpose::STANDARD
                .decode(line[11..].trim())
                .unwrap_or_default();
            let parts: Vec<&[u8]> = decoded.split(|&b| b == 0).collect();
            let given = match parts.as_slice() {
                [_, user, pass] => Some((
                    String::from_utf8_lossy(user).into_owned(),
                    String::from_utf8_lossy(pass).into_owned(),
                )),
                _ => None,
            };
            if given.is_some() && given == features.auth {
                auth = given.map(|(user, _)| user);
                "235 2.7.0 Authentication successful\r\n".into()
            } else {
                "535 5.7.8 Authentication credentials invalid\r\n".into()
            }
        } else if features.auth.is_some() && auth.is_none() && upper.starts_with("MAIL") {
            "530 5.7.0 Authentication required\r\n".into()
        } else if upper.starts_with("MAIL FROM:") {
            from = addr(&line);
            parameters = line
                .split_once('>')
                .map_or("", |(_, rest)| rest)
                .trim()
                .to_string();
            rcpts.clear();
            "250 2.1.0 Ok\r\n".into()
        } else if upper.starts_with("RCPT TO:") {
            let to = addr(&line);
            if to.starts_with("reject") {
                "550 5.1.1 <".to_string() + &to + ">: Recipient address rejected: User unknown\r\n"
            } else if to.starts_with("defer") {
                "450 4.2.0 <".to_string() + &to + ">: Recipient address rejected: try later\r\n"
            } else {
                rcpts.push(to);
                "250 2.1.5 Ok\r\n".into()
            }
        } else if upper.starts_with("DATA") {
            if write
                .write_all(b"354 End data with <CR><LF>.<CR><LF>\r\n")
                .await
                .is_err()
            {
                return;
            }
            let mut data = Vec::new();
            loop {
                let mut raw = Vec::new();
                match lines.read_until(b'\n', &mut raw).await {
                    Ok(0) | Err(_) => return,
                    Ok(_) => {}
                }
                if raw == b".\r\n" {
                    break;
                }
                let unstuffed = if raw.starts_with(b"..") {
                    &raw[1..]
                } else {
                    &raw[..]
                };
                data.extend_from_slice(unstuffed);
            }
            if from.starts_with("defer-data") {
                // A sender asking for a temporary refusal of the message itself.
                from.clear();
                rcpts.clear();
                "451 4.3.0 Error: queue file write error\r\n".to_string()
            } else {
                let mut all = state.messages.lock().unwrap();
                all.push(Received {
                    mail_from: std::mem::take(&mut from),
                    mail_parameters: std::mem::take(&mut parameters),
                    rcpt_to: std::mem::take(&mut rcpts),
                    data,
                    tls,
                    auth: auth.clone(),
                });
                format!("250 2.0.0 Ok: queued as L{:05}\r\n", all.len())
            }
        } else if upper.starts_with("RSET") {
            state.rsets.fetch_add(1, Ordering::Relaxed);
            from.clear();
            rcpts.clear();
            "250 2.0.0 Ok\r\n".into()
        } else if upper.starts_with("NOOP") {
            "250 2.0.0 Ok\r\n".into()
        } else if upper.starts_with("QUIT") {
            let _ = write.write_all(b"221 2.0.0 Bye\r\n").await;
            return;
        } else {
            "502 5.5.2 Error: command not recognized\r\n".into()
        };
        if write.write_all(reply.as_bytes()).await.is_err() {
            return;
        }
    }
}

fn addr(line: &str) -> String {
    let start = line.find('<').map_or(0, |i| i + 1);
    let end = line[start..].find('>').map_or(line.len(), |i| start + i);
    line[start..end].to_string()
}

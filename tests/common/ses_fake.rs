//! An in-process SES v2 API fake: a small HTTP/1.1 server that answers
//! `POST /v2/email/outbound-emails`, records every request, and can be told to
//! throttle, reject, fail or stall. The relay's SES client reaches it through
//! `ses.endpoint-url`, so the relay's real client code runs.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use base64::Engine;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpListener;

/// How the fake answers.
#[derive(Debug, Clone)]
pub enum Mode {
    /// 200 with a MessageId.
    Accept,
    /// 429 TooManyRequestsException.
    Throttle,
    /// 400 with this error type and message.
    Reject(&'static str, &'static str),
    /// 500 InternalFailure.
    Fail,
    /// Waits this long before accepting.
    Stall(Duration),
    /// Reads the request, then closes the connection without an answer.
    Hangup,
}

/// One SendEmail request as received.
#[derive(Debug, Clone)]
pub struct SendEmail {
    pub from: Option<String>,
    pub to: Vec<String>,
    pub configuration_set: Option<String>,
    pub raw: Vec<u8>,
    pub authorization: bool,
    /// `EmailTags` as `(Name, Value)`, in order.
    pub tags: Vec<(String, String)>,
}

#[derive(Default)]
struct State {
    mode: Mutex<Option<Mode>>,
    requests: Mutex<Vec<SendEmail>>,
    attempts: AtomicU32,
}

/// The running fake.
pub struct SesFake {
    pub addr: SocketAddr,
    state: Arc<State>,
}

impl SesFake {
    pub async fn start() -> SesFake {
        SesFake::start_with(None).await
    }

    /// The fake behind TLS (HTTPS), with this acceptor's certificate.
    pub async fn start_tls(acceptor: tokio_rustls::TlsAcceptor) -> SesFake {
        SesFake::start_with(Some(acceptor)).await
    }

    async fn start_with(tls: Option<tokio_rustls::TlsAcceptor>) -> SesFake {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let state = Arc::new(State::default());
        *state.mode.lock().unwrap() = Some(Mode::Accept);
        let shared = state.clone();
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let state = shared.clone();
                match tls.clone() {
                    None => drop(tokio::spawn(serve(stream, state))),
                    Some(acceptor) => drop(tokio::spawn(async move {
                        // A client that refuses the certificate ends here.
                        if let Ok(stream) = acceptor.accept(stream).await {
                            serve(stream, state).await;
                        }
                    })),
                }
            }
        });
        SesFake { addr, state }
    }

    pub fn endpoint(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn set_mode(&self, mode: Mode) {
        *self.state.mode.lock().unwrap() = Some(mode);
    }

    /// Accepted SendEmail requests (all requests whose body parsed).
    pub fn requests(&self) -> Vec<SendEmail> {
        self.state.requests.lock().unwrap().clone()
    }

    /// HTTP requests received, retries included.
    pub fn attempts(&self) -> u32 {
        self.state.attempts.load(Ordering::Relaxed)
    }
}

async fn serve<S: AsyncRead + AsyncWrite + Unpin>(mut stream: S, state: Arc<State>) {
    let mut buf = Vec::new();
    loop {
        // Headers.
        let head_end = loop {
            if let Some(pos) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                break pos + 4;
            }
            let mut chunk = [0u8; 8192];
            match stream.read(&mut chunk).await {
                Ok(0) | Err(_) => return,
                Ok(n) => buf.extend_from_slice(&chunk[..n]),
            }
        };
        let head = String::from_utf8_lossy(&buf[..head_end]).to_string();
        let length: usize = head
            .lines()
            .find_map(|l| {
                let (name, value) = l.split_once(':')?;
                name.eq_ignore_ascii_case("content-length")
                    .then(|| value.trim().parse().ok())?
            })
            .unwrap_or(0);
        while buf.len() < head_end + length {
            let mut chunk = vec![0u8; 65536];
            match stream.read(&mut chunk).await {
                Ok(0) | Err(_) => return,
                Ok(n) => buf.extend_from_slice(&chunk[..n]),
            }
        }
        let body: Vec<u8> = buf[head_end..head_end + length].to_vec();
        buf.drain(..head_end + length);
        state.attempts.fetch_add(1, Ordering::Relaxed);
        let authorization = head
            .to_ascii_lowercase()
            .contains("\nauthorization: aws4-hmac-sha256");
        let request_line = head.lines().next().unwrap_or("").to_string();
        let mode = state.mode.lock().unwrap().clone().unwrap_or(Mode::Accept);
        if matches!(mode, Mode::Hangup) {
            return;
        }
        let response = if !request_line.starts_with("POST /v2/email/outbound-emails ") {
            http(404, None, r#"{"message":"not found"}"#)
        } else {
            match mode {
                Mode::Accept | Mode::Stall(_) => {
                    if let Mode::Stall(wait) = mode {
                        tokio::time::sleep(wait).await;
                    }
                    match parse(&body, authorization) {
                        Some(request) => {
                            let mut all = state.requests.lock().unwrap();
                            all.push(request);
                            http(
                                200,
                                None,
                                &format!(r#"{{"MessageId":"fake-{:04}"}}"#, all.len()),
                            )
                        }
                        None => http(
                            400,
                            Some("BadRequestException"),
                            r#"{"message":"unparseable request"}"#,
                        ),
                    }
                }
                Mode::Throttle => http(
                    429,
                    Some("TooManyRequestsException"),
                    r#"{"message":"Maximum sending rate exceeded."}"#,
                ),
                Mode::Reject(code, message) => {
                    http(400, Some(code), &format!(r#"{{"message":"{message}"}}"#))
                }
                Mode::Hangup => unreachable!("answered above"),
                Mode::Fail => http(
                    500,
                    Some("InternalFailure"),
                    r#"{"message":"internal failure"}"#,
                ),
            }
        };
        if stream.write_all(response.as_bytes()).await.is_err() {
            return;
        }
    }
}

fn http(status: u16, error_type: Option<&str>, body: &str) -> String {
    let reason = match status {
        200 => "OK",
        400 => "Bad Request",
        404 => "Not Found",
        429 => "Too Many Requests",
        _ => "Internal Server Error",
    };
    let error = error_type
        .map(|t| format!("x-amzn-ErrorType: {t}\r\n"))
        .unwrap_or_default();
    format!(
        "HTTP/1.1 {status} {reason}\r\nContent-Type: application/json\r\n{error}x-amzn-RequestId: fake\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
}

fn parse(body: &[u8], authorization: bool) -> Option<SendEmail> {
    let json: serde_json::Value = serde_json::from_slice(body).ok()?;
    let data = json["Content"]["Raw"]["Data"].as_str()?;
    let raw = base64::engine::general_purpose::STANDARD
        .decode(data)
        .ok()?;
    let to = json["Destination"]["ToAddresses"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|v| v.as_str().map(String::from))
                .collect()
        })
        .unwrap_or_default();
    Some(SendEmail {
        from: json["FromEmailAddress"].as_str().map(String::from),
        to,
        configuration_set: json["ConfigurationSetName"].as_str().map(String::from),
        raw,
        authorization,
        tags: json["EmailTags"]
            .as_array()
            .map(|a| {
                a.iter()
                    .map(|t| {
                        let text = |k: &str| t[k].as_str().unwrap_or("").to_string();
                        (text("Name"), text("Value"))
                    })
                    .collect()
            })
            .unwrap_or_default(),
    })
}

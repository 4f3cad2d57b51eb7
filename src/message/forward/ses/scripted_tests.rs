//! The SES route's answers and retries, against an SES v2 endpoint on
//! 127.0.0.1 that answers from a script: the reply (code and enhanced code)
//! for each SES error code, when credentials are renewed, and the retry
//! guard: throttling and server errors are sent again, nothing SES may have
//! taken is.

use std::sync::Arc;
use std::time::Duration;

use aws_sdk_sesv2::config::SharedCredentialsProvider;

use super::{MAX_ATTEMPTS, SesCode, SesForwarder};
use crate::config::SesConfig;
use crate::message::envelope::{Envelope, MailFrom};
use crate::message::forward::Retry;
use crate::message::forward::UpstreamError;

#[test]
fn each_throttling_and_limit_code_is_451_4_4_5() {
    for code in [
        "Throttling",
        "ThrottlingException",
        "TooManyRequestsException",
        "TooManyRequests",
        "LimitExceededException",
        "LimitExceeded",
    ] {
        let err = UpstreamError::ses(code, "Maximum sending rate exceeded.");
        assert_eq!(err.retry, Retry::Temporary, "{code}");
        assert_eq!(
            err.reply().to_string(),
            format!("451 4.4.5 Maximum sending rate exceeded. ({code})")
        );
    }
}

#[test]
fn a_paused_or_suspended_account_is_451_4_7_0() {
    for code in [
        "SendingPausedException",
        "SendingPaused",
        "AccountSuspendedException",
        "AccountSuspended",
    ] {
        let err = UpstreamError::ses(code, "Sending paused for this account.");
        assert_eq!(err.retry, Retry::Temporary, "{code}");
        assert_eq!(
            err.reply().to_string(),
            format!("451 4.7.0 Sending paused for this account. ({code})")
        );
        assert!(SesCode::of(code).stops_the_account(), "{code}");
    }
    // Unknown codes keep the generic enhanced code, so the arms above are
    // what gives these their own.
    assert_eq!(
        UpstreamError::ses("InternalFailure", "x")
            .reply()
            .to_string(),
        "451 4.3.0 x (InternalFailure)"
    );
}

#[test]
fn credential_and_throttling_codes_are_told_apart() {
    for code in [
        "ExpiredToken",
        "ExpiredTokenException",
        "InvalidClientTokenId",
        "UnrecognizedClientException",
        "InvalidSignatureException",
    ] {
        assert!((SesCode::of(code) == SesCode::CredentialsRefused), "{code}");
        assert!(!SesCode::of(code).is_throttling(), "{code}");
    }
    for code in [
        "Throttling",
        "ThrottlingException",
        "TooManyRequestsException",
        "TooManyRequests",
    ] {
        assert!(SesCode::of(code).is_throttling(), "{code}");
        assert!(
            !(SesCode::of(code) == SesCode::CredentialsRefused),
            "{code}"
        );
    }
    for code in ["MessageRejected", "InternalFailure", "HTTP400", ""] {
        assert!(
            !(SesCode::of(code) == SesCode::CredentialsRefused),
            "{code}"
        );
        assert!(!SesCode::of(code).is_throttling(), "{code}");
    }
}

/// One scripted answer of [`ScriptedSes`].
#[derive(Debug, Clone, Copy)]
enum Scripted {
    /// This HTTP status with this `x-amzn-ErrorType` (200: a MessageId).
    Status(u16, &'static str),
    /// Reads the request, then closes the connection without answering:
    /// SES may have taken the message.
    Hangup,
    /// Answers 200 but closes before the body announced is whole: SES
    /// took the message, and its answer was lost.
    Truncated,
}

/// An SES v2 endpoint on 127.0.0.1 answering from a script (the last
/// answer repeats), counting every request that reached it. The
/// forwarder's own HTTP client, signing and retry loop run against it.
struct ScriptedSes {
    endpoint: String,
    requests: Arc<std::sync::atomic::AtomicU32>,
}

impl ScriptedSes {
    async fn start(script: &[Scripted]) -> ScriptedSes {
        use std::sync::atomic::{AtomicU32, Ordering};
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let endpoint = format!("http://{}", listener.local_addr().unwrap());
        let requests = Arc::new(AtomicU32::new(0));
        let script: Arc<[Scripted]> = script.into();
        let counter = requests.clone();
        tokio::spawn(async move {
            while let Ok((mut stream, _)) = listener.accept().await {
                let (script, counter) = (script.clone(), counter.clone());
                tokio::spawn(async move {
                    let mut buf = Vec::new();
                    loop {
                        let head_end = loop {
                            if let Some(at) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                                break at + 4;
                            }
                            let mut chunk = [0u8; 8192];
                            match stream.read(&mut chunk).await {
                                Ok(0) | Err(_) => return,
                                Ok(n) => buf.extend_from_slice(&chunk[..n]),
                            }
                        };
                        let head = String::from_utf8_lossy(&buf[..head_end]).to_lowercase();
                        let length: usize = head
                            .lines()
                            .find_map(|l| l.strip_prefix("content-length:"))
                            .and_then(|v| v.trim().parse().ok())
                            .unwrap_or(0);
                        while buf.len() < head_end + length {
                            let mut chunk = [0u8; 8192];
                            match stream.read(&mut chunk).await {
                                Ok(0) | Err(_) => return,
                                Ok(n) => buf.extend_from_slice(&chunk[..n]),
                            }
                        }
                        buf.drain(..head_end + length);
                        let n = counter.fetch_add(1, Ordering::SeqCst) as usize;
                        let answer = script[n.min(script.len() - 1)];
                        let (status, code) = match answer {
                            Scripted::Status(status, code) => (status, code),
                            Scripted::Hangup => return,
                            Scripted::Truncated => {
                                let cut = "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n\
                                           Content-Length: 1000\r\n\r\n{\"MessageId\"";
                                let _ = stream.write_all(cut.as_bytes()).await;
                                return;
                            }
                        };
                        let body = if status == 200 {
                            format!(r#"{{"MessageId":"scripted-{n}"}}"#)
                        } else {
                            format!(r#"{{"message":"scripted {code}"}}"#)
                        };
                        let error = if code.is_empty() {
                            String::new()
                        } else {
                            format!("x-amzn-ErrorType: {code}\r\n")
                        };
                        let response = format!(
                            "HTTP/1.1 {status} Scripted\r\nContent-Type: application/json\r\n\
                             {error}Content-Length: {}\r\n\r\n{body}",
                            body.len()
                        );
                        if stream.write_all(response.as_bytes()).await.is_err() {
                            return;
                        }
                    }
                });
            }
        });
        ScriptedSes { endpoint, requests }
    }

    fn requests(&self) -> u32 {
        self.requests.load(std::sync::atomic::Ordering::SeqCst)
    }
}

/// A credential chain that counts how often it is asked.
#[derive(Debug, Clone, Default)]
struct CountingChain(Arc<std::sync::atomic::AtomicU32>);

impl aws_credential_types::provider::ProvideCredentials for CountingChain {
    fn provide_credentials<'a>(
        &'a self,
    ) -> aws_credential_types::provider::future::ProvideCredentials<'a>
    where
        Self: 'a,
    {
        let n = self.0.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        aws_credential_types::provider::future::ProvideCredentials::ready(Ok(
            aws_credential_types::Credentials::new(
                format!("AKID{n}"),
                "secret",
                None,
                None,
                "test",
            ),
        ))
    }
}

impl CountingChain {
    fn calls(&self) -> u32 {
        self.0.load(std::sync::atomic::Ordering::SeqCst)
    }
}

async fn scripted_forwarder(ses: &ScriptedSes, chain: &CountingChain) -> SesForwarder {
    let config = SesConfig {
        region: "ap-northeast-1".into(),
        configuration_set: "cs".into(),
        endpoint_url: ses.endpoint.clone(),
        timeout: crate::config::HumanDuration(Duration::from_secs(10)),
        ..SesConfig::default()
    };
    SesForwarder::new(&config, Some(SharedCredentialsProvider::new(chain.clone())))
        .await
        .unwrap()
}

fn envelope() -> Envelope {
    Envelope {
        id: "0123456789ABCDEF".into(),
        client: "127.0.0.1:2525".parse().unwrap(),
        helo: "client.test".into(),
        tls: false,
        esmtp: true,
        mail: MailFrom {
            address: "a@goo.ne.jp".into(),
            ..MailFrom::default()
        },
        rcpt_to: vec!["b@example.com".into()],
        route: crate::message::route::Route::Ses,
        tags: Vec::new(),
    }
}

/// What the client would hear for one message through the forwarder.
#[derive(Debug, PartialEq)]
enum Heard {
    /// Taken: SES's MessageId.
    Queued(String),
    /// Not taken: the SMTP reply line.
    Refused(String),
}

impl Heard {
    fn refused(self) -> String {
        match self {
            Heard::Refused(reply) => reply,
            Heard::Queued(id) => panic!("expected a refusal, SES took it as {id}"),
        }
    }
}

/// One message through the forwarder.
async fn send_one(forwarder: &SesForwarder) -> Heard {
    let message = b"From: a@goo.ne.jp\r\nSubject: x\r\n\r\nbody\r\n".to_vec();
    match forwarder.send(&envelope(), message).await {
        Ok(accepted) => Heard::Queued(accepted.upstream_id.unwrap_or_default()),
        Err(err) => Heard::Refused(err.reply().to_string()),
    }
}

#[tokio::test]
async fn expired_credentials_are_asked_for_again_before_the_next_message() {
    let ses = ScriptedSes::start(&[
        Scripted::Status(403, "ExpiredTokenException"),
        Scripted::Status(200, ""),
    ])
    .await;
    let chain = CountingChain::default();
    let forwarder = scripted_forwarder(&ses, &chain).await;
    assert_eq!(chain.calls(), 1, "asked once at startup");
    let refused = send_one(&forwarder).await.refused();
    assert_eq!(
        refused,
        "451 4.3.0 scripted ExpiredTokenException (ExpiredTokenException)"
    );
    assert_eq!(ses.requests(), 1, "a 403 is not retried");
    assert_eq!(
        send_one(&forwarder).await,
        Heard::Queued("scripted-1".into())
    );
    assert_eq!(chain.calls(), 2, "SES refused the credentials: renewed");
}

#[tokio::test]
async fn credentials_are_not_renewed_after_an_unrelated_refusal() {
    let ses = ScriptedSes::start(&[
        Scripted::Status(400, "MessageRejected"),
        Scripted::Status(200, ""),
    ])
    .await;
    let chain = CountingChain::default();
    let forwarder = scripted_forwarder(&ses, &chain).await;
    assert_eq!(
        send_one(&forwarder).await,
        Heard::Refused("554 5.7.1 scripted MessageRejected (MessageRejected)".into())
    );
    assert_eq!(
        send_one(&forwarder).await,
        Heard::Queued("scripted-1".into())
    );
    assert_eq!(chain.calls(), 1, "long-term keys SES did not refuse");
    assert_eq!(ses.requests(), 2);
}

#[tokio::test]
async fn a_throttling_code_on_a_400_is_retried_as_throttling() {
    // SES v2 throttles with 429, but a throttling code may come on
    // another status (older endpoints, emulators): still refused before
    // being taken, so sent again.
    let ses = ScriptedSes::start(&[
        Scripted::Status(400, "ThrottlingException"),
        Scripted::Status(200, ""),
    ])
    .await;
    let forwarder = scripted_forwarder(&ses, &CountingChain::default()).await;
    assert_eq!(
        send_one(&forwarder).await,
        Heard::Queued("scripted-1".into())
    );
    assert_eq!(ses.requests(), 2);

    // Throttled on every attempt: a temporary failure with its own code.
    let ses = ScriptedSes::start(&[Scripted::Status(400, "ThrottlingException")]).await;
    let forwarder = scripted_forwarder(&ses, &CountingChain::default()).await;
    assert_eq!(
        send_one(&forwarder).await,
        Heard::Refused("451 4.4.5 scripted ThrottlingException (ThrottlingException)".into())
    );
    assert_eq!(ses.requests(), MAX_ATTEMPTS);
}

#[tokio::test]
async fn a_request_ses_may_have_taken_is_never_sent_again() {
    // The connection closes after the request went out: no answer, so SES
    // may have the message. Sending it again could deliver it twice.
    let ses = ScriptedSes::start(&[Scripted::Hangup, Scripted::Status(200, "")]).await;
    let forwarder = scripted_forwarder(&ses, &CountingChain::default()).await;
    let refused = send_one(&forwarder).await.refused();
    assert!(
        refused.starts_with("451 4.4.1 cannot reach SES"),
        "{refused}"
    );
    assert_eq!(ses.requests(), 1);

    // SES answered, but the answer was cut short: it may well have the message.
    let ses = ScriptedSes::start(&[Scripted::Truncated, Scripted::Status(200, "")]).await;
    let forwarder = scripted_forwarder(&ses, &CountingChain::default()).await;
    let refused = send_one(&forwarder).await.refused();
    assert!(refused.starts_with("451 4.4.2 "), "{refused}");
    assert_eq!(ses.requests(), 1);

    // A refusal SES gave after reading the message is final too.
    let ses = ScriptedSes::start(&[
        Scripted::Status(400, "BadRequestException"),
        Scripted::Status(200, ""),
    ])
    .await;
    let forwarder = scripted_forwarder(&ses, &CountingChain::default()).await;
    assert_eq!(
        send_one(&forwarder).await,
        Heard::Refused("554 5.6.0 scripted BadRequestException (BadRequestException)".into())
    );
    assert_eq!(ses.requests(), 1);
}

#[tokio::test]
async fn throttled_and_server_errors_are_retried_up_to_the_attempt_limit() {
    // 429 without a code, then 500: both are retried, the third attempt lands.
    let ses = ScriptedSes::start(&[
        Scripted::Status(429, ""),
        Scripted::Status(500, "InternalFailure"),
        Scripted::Status(200, ""),
    ])
    .await;
    let forwarder = scripted_forwarder(&ses, &CountingChain::default()).await;
    assert_eq!(
        send_one(&forwarder).await,
        Heard::Queued("scripted-2".into())
    );
    assert_eq!(ses.requests(), 3);

    // Never more than MAX_ATTEMPTS requests for one message.
    let ses = ScriptedSes::start(&[Scripted::Status(500, "InternalFailure")]).await;
    let forwarder = scripted_forwarder(&ses, &CountingChain::default()).await;
    assert_eq!(
        send_one(&forwarder).await,
        Heard::Refused("451 4.3.0 scripted InternalFailure (InternalFailure)".into())
    );
    assert_eq!(ses.requests(), MAX_ATTEMPTS);
}

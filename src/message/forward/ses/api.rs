//! One SES v2 `SendEmail` call on the wire (restJson1, SigV4).
//!
//! The SDK's `send_email()` would do, and did until measured: its request
//! pipeline (configuration layers, interceptors, endpoint rules, nested
//! timeout and retry wrappers) cost about 50 µs of CPU per call beyond the
//! HTTP exchange itself, a quarter of an RSA-2048 signature, and it base64s
//! the message into a string and copies that into the JSON, holding a large
//! message 3.7 times over. Here the body is written in one pass from the
//! message bytes, signed by AWS's own SigV4 crate, and sent on kept-alive
//! connections. The SDK still supplies region and credentials and serves
//! `preflight`.

use std::time::SystemTime;

use aws_sigv4::http_request::{SignableBody, SignableRequest, SigningSettings, sign};
use aws_sigv4::sign::v4::SigningParams;
use aws_smithy_runtime_api::client::identity::Identity;
use base64::Engine;
use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::header::{CONTENT_TYPE, HOST, HeaderValue, USER_AGENT};
use hyper::{Method, Request, StatusCode, Uri};
use serde::{Deserialize, Serialize};

use crate::message::envelope::{Envelope, MessageTag};

/// SigV4 service name of SES (v1 and v2 alike).
const SIGNING_NAME: &str = "ses";

/// The SendEmail resource.
const SEND_EMAIL_PATH: &str = "/v2/email/outbound-emails";

/// Largest response body read: SES answers with a MessageId or a short error.
const MAX_RESPONSE: usize = 64 * 1024;

/// Why a SendEmail request could not be built or signed.
#[derive(Debug, thiserror::Error)]
pub enum RequestError {
    /// The HTTP request itself.
    #[error("{0}")]
    Http(#[from] hyper::http::Error),
    /// SigV4 refused the parameters or the request.
    #[error("{0}")]
    Signing(Box<dyn std::error::Error + Send + Sync>),
    /// The thread that signed a large message failed.
    #[error("{0}")]
    Task(#[from] tokio::task::JoinError),
}

impl RequestError {
    fn signing(err: impl std::error::Error + Send + Sync + 'static) -> RequestError {
        RequestError::Signing(Box::new(err))
    }
}

/// SES's answer could not be read to its end.
#[derive(Debug, thiserror::Error)]
#[error("reading the SES answer: {0}")]
pub struct ReadError(Box<dyn std::error::Error + Send + Sync>);

/// Where and how calls are addressed.
#[derive(Debug)]
pub struct Target {
    uri: Uri,
    host: HeaderValue,
    region: String,
    user_agent: HeaderValue,
}

/// Why a target cannot be built from the endpoint.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct TargetError(String);

impl Target {
    /// `endpoint` is `https://email.<region>.amazonaws.com` or an override
    /// (`http://127.0.0.1:4566` for an emulator).
    pub fn new(endpoint: &str, region: &str) -> Result<Target, TargetError> {
        let url = format!("{}{SEND_EMAIL_PATH}", endpoint.trim_end_matches('/'));
        let uri: Uri = url
            .parse()
            .map_err(|err| TargetError(format!("{endpoint}: {err}")))?;
        if !matches!(uri.scheme_str(), Some("http" | "https")) {
            return Err(TargetError(format!("{endpoint}: not an http(s) URL")));
        }
        let authority = uri
            .authority()
            .ok_or_else(|| TargetError(format!("{endpoint}: no host")))?;
        let host = HeaderValue::from_str(authority.as_str())
            .map_err(|err| TargetError(format!("{endpoint}: {err}")))?;
        Ok(Target {
            host,
            uri,
            region: region.to_string(),
            user_agent: HeaderValue::from_static(concat!("ses-relay/", env!("CARGO_PKG_VERSION"))),
        })
    }

    /// The default endpoint of a region.
    pub fn aws_endpoint(region: &str) -> String {
        format!("https://email.{region}.amazonaws.com")
    }

    /// The signed HTTP request for `body`. Hashes the whole body: for a large
    /// message call it off the async worker threads.
    pub fn signed_request(
        &self,
        identity: &Identity,
        body: Bytes,
    ) -> Result<Request<Full<Bytes>>, RequestError> {
        let mut request = Request::builder()
            .method(Method::POST)
            .uri(self.uri.clone())
            .header(HOST, self.host.clone())
            .header(CONTENT_TYPE, "application/json")
            .header(USER_AGENT, self.user_agent.clone())
            .body(Full::new(body.clone()))?;
        let params = SigningParams::builder()
            .identity(identity)
            .region(&self.region)
            .name(SIGNING_NAME)
            .time(SystemTime::now())
            .settings(SigningSettings::default())
            .build()
            .map_err(RequestError::signing)?
            .into();
        let headers = request
            .headers()
            .iter()
            .filter_map(|(name, value)| Some((name.as_str(), value.to_str().ok()?)));
        let uri = self.uri.to_string();
        let signable = SignableRequest::new("POST", uri, headers, SignableBody::Bytes(&body))
            .map_err(RequestError::signing)?;
        let (instructions, _) = sign(signable, &params)
            .map_err(RequestError::signing)?
            .into_parts();
        instructions.apply_to_request_http1x(&mut request);
        Ok(request)
    }
}

/// The envelope's part of the request: everything but the content.
#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
struct EnvelopeFields<'a> {
    destination: Destination<'a>,
    #[serde(skip_serializing_if = "str::is_empty")]
    configuration_set_name: &'a str,
    /// Absent for the null sender: SES then takes the From header.
    #[serde(skip_serializing_if = "Option::is_none")]
    from_email_address: Option<&'a str>,
    /// `[ses] tags` and the message's own `X-SES-MESSAGE-TAGS`, already checked.
    #[serde(skip_serializing_if = "<[_]>::is_empty")]
    email_tags: &'a [MessageTag],
}

#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
struct Destination<'a> {
    /// Every envelope recipient, Bcc-only ones included: they are nowhere else.
    to_addresses: &'a [String],
}

/// The JSON fields of a SendEmail request other than the content, as an
/// object's inside (no braces); small, so it is made on the async side.
pub fn envelope_fields(envelope: &Envelope, configuration_set: &str) -> Vec<u8> {
    let fields = EnvelopeFields {
        destination: Destination {
            to_addresses: &envelope.rcpt_to,
        },
        configuration_set_name: configuration_set,
        from_email_address: (!envelope.mail.address.is_empty())
            .then_some(envelope.mail.address.as_str()),
        email_tags: &envelope.tags,
    };
    let mut json = serde_json::to_vec(&fields).expect("strings always serialize");
    json.pop();
    json.remove(0);
    json
}

/// The SendEmail body: `{"Content":{"Raw":{"Data":"<base64>"}},<fields>}`,
/// written into one buffer of exactly its size, base64 straight from the
/// message. Linear in the message: call it off the async worker threads
/// for a large one.
pub fn send_email_body(fields: &[u8], message: &[u8]) -> Bytes {
    const HEAD: &[u8] = br#"{"Content":{"Raw":{"Data":""#;
    const TAIL: &[u8] = br#""}},"#;
    let engine = &base64::engine::general_purpose::STANDARD;
    let encoded = base64::encoded_len(message.len(), true).expect("a message fits in memory");
    let mut body = Vec::with_capacity(HEAD.len() + encoded + TAIL.len() + fields.len() + 1);
    body.extend_from_slice(HEAD);
    let start = body.len();
    body.resize(start + encoded, 0);
    engine
        .encode_slice(message, &mut body[start..])
        .expect("sized above");
    body.extend_from_slice(TAIL);
    body.extend_from_slice(fields);
    body.push(b'}');
    Bytes::from(body)
}

/// What SES answered.
#[derive(Debug, PartialEq, Eq)]
pub enum Answer {
    /// 200: the message id.
    Accepted(String),
    /// An error: HTTP status, error code (if SES named one), message.
    Refused {
        /// The HTTP status.
        status: StatusCode,
        /// `MessageRejected`, `TooManyRequestsException`...
        code: Option<String>,
        /// SES's own words.
        message: String,
    },
}

#[derive(Deserialize)]
struct AcceptedBody {
    #[serde(rename = "MessageId", default)]
    message_id: String,
}

#[derive(Deserialize, Default)]
struct ErrorBody {
    #[serde(rename = "__type", alias = "code", alias = "Code", default)]
    code: Option<String>,
    #[serde(alias = "Message", default)]
    message: Option<String>,
}

/// Reads SES's answer (at most 64 KiB of it).
pub async fn read_answer(
    response: hyper::Response<hyper::body::Incoming>,
) -> Result<Answer, ReadError> {
    let status = response.status();
    let header_code = response
        .headers()
        .get("x-amzn-errortype")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    let body = Limited::new(response.into_body(), MAX_RESPONSE)
        .collect()
        .await
        .map_err(ReadError)?
        .to_bytes();
    Ok(answer(status, header_code.as_deref(), &body))
}

/// Interprets a status, the `x-amzn-ErrorType` header and the body.
pub fn answer(status: StatusCode, header_code: Option<&str>, body: &[u8]) -> Answer {
    if status.is_success() {
        let id = serde_json::from_slice::<AcceptedBody>(body)
            .map(|b| b.message_id)
            .unwrap_or_default();
        return Answer::Accepted(id);
    }
    let parsed: ErrorBody = serde_json::from_slice(body).unwrap_or_default();
    let code = header_code
        .map(str::to_string)
        .or(parsed.code)
        .map(|c| error_code(&c).to_string())
        .filter(|c| !c.is_empty());
    let message = parsed
        .message
        .unwrap_or_else(|| format!("SES answered HTTP {status}"));
    Answer::Refused {
        status,
        code,
        message,
    }
}

/// The bare error code: restJson1 allows `Code:http://...` and `namespace#Code`.
fn error_code(raw: &str) -> &str {
    let code = raw.split(':').next().unwrap_or(raw);
    code.rsplit('#').next().unwrap_or(code).trim()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::message::envelope::MailFrom;
    use crate::message::route::Route;

    fn envelope(from: &str, rcpts: &[&str]) -> Envelope {
        Envelope {
            id: "1".into(),
            client: "127.0.0.1:2525".parse().unwrap(),
            helo: "client".into(),
            tls: false,
            esmtp: true,
            mail: MailFrom {
                address: from.into(),
                ..MailFrom::default()
            },
            rcpt_to: rcpts.iter().map(|r| r.to_string()).collect(),
            route: Route::Ses,
            tags: Vec::new(),
        }
    }

    #[test]
    fn body_is_the_send_email_json_with_the_message_in_base64() {
        let message = b"From: a@goo.ne.jp\r\n\r\nbody \xe3\x81\x82\r\n";
        let fields = envelope_fields(
            &envelope(
                "a\"q\"@goo.ne.jp",
                &["b@example.com", "\u{3042}@example.jp"],
            ),
            "set",
        );
        let body = send_email_body(&fields, message);
        let json: serde_json::Value = serde_json::from_slice(&body).unwrap();
        let data = json["Content"]["Raw"]["Data"].as_str().unwrap();
        let decoded = base64::engine::general_purpose::STANDARD
            .decode(data)
            .unwrap();
        assert_eq!(decoded, message);
        assert_eq!(
            json["Destination"]["ToAddresses"],
            serde_json::json!(["b@example.com", "\u{3042}@example.jp"])
        );
        assert_eq!(json["ConfigurationSetName"], "set");
        assert_eq!(json["FromEmailAddress"], "a\"q\"@goo.ne.jp");
    }

    #[test]
    fn tags_are_email_tags_and_absent_when_there_are_none() {
        let mut env = envelope("a@goo.ne.jp", &["b@example.com"]);
        let json = |env: &Envelope| -> serde_json::Value {
            serde_json::from_slice(&send_email_body(&envelope_fields(env, "set"), b"x")).unwrap()
        };
        assert!(json(&env).get("EmailTags").is_none());
        env.tags = vec![
            MessageTag {
                name: "service".into(),
                value: "goo-mail".into(),
            },
            MessageTag {
                name: "campaign".into(),
                value: "winter".into(),
            },
        ];
        assert_eq!(
            json(&env)["EmailTags"],
            serde_json::json!([
                {"Name": "service", "Value": "goo-mail"},
                {"Name": "campaign", "Value": "winter"}
            ])
        );
    }

    #[test]
    fn null_sender_and_no_configuration_set_leave_their_fields_out() {
        let fields = envelope_fields(&envelope("", &["b@example.com"]), "");
        let body = send_email_body(&fields, b"x");
        let json: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert!(json.get("FromEmailAddress").is_none(), "{json}");
        assert!(json.get("ConfigurationSetName").is_none(), "{json}");
    }

    #[test]
    fn answers_are_read_in_every_restjson_error_form() {
        assert_eq!(
            answer(StatusCode::OK, None, br#"{"MessageId":"0100-abc"}"#),
            Answer::Accepted("0100-abc".into())
        );
        let refused = |status, header, body: &[u8]| match answer(status, header, body) {
            Answer::Refused { code, message, .. } => (code, message),
            other => panic!("{other:?}"),
        };
        assert_eq!(
            refused(
                StatusCode::BAD_REQUEST,
                Some("MessageRejected:http://internal.amazon.com/coral/com.amazon.ses/"),
                br#"{"message":"Email address is not verified."}"#
            ),
            (
                Some("MessageRejected".into()),
                "Email address is not verified.".into()
            )
        );
        assert_eq!(
            refused(
                StatusCode::TOO_MANY_REQUESTS,
                None,
                br#"{"__type":"com.amazonaws.sesv2#TooManyRequestsException","Message":"slow down"}"#
            ),
            (
                Some("TooManyRequestsException".into()),
                "slow down".into()
            )
        );
        assert_eq!(
            refused(StatusCode::BAD_GATEWAY, None, b"<html>bad gateway</html>"),
            (None, "SES answered HTTP 502 Bad Gateway".into())
        );
    }

    #[test]
    fn requests_are_signed_for_ses_in_the_region() {
        let target = Target::new("http://127.0.0.1:4566/", "ap-northeast-1").unwrap();
        let credentials = aws_credential_types::Credentials::new(
            "AKIDEXAMPLE",
            "secret",
            Some("token".into()),
            None,
            "test",
        );
        let request = target
            .signed_request(&credentials.into(), Bytes::from_static(b"{}"))
            .unwrap();
        assert_eq!(
            request.uri().to_string(),
            "http://127.0.0.1:4566/v2/email/outbound-emails"
        );
        assert_eq!(request.headers()[HOST], "127.0.0.1:4566");
        let authorization = request.headers()["authorization"].to_str().unwrap();
        assert!(
            authorization.starts_with("AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/"),
            "{authorization}"
        );
        assert!(
            authorization.contains("/ap-northeast-1/ses/aws4_request"),
            "{authorization}"
        );
        assert!(
            authorization
                .contains("SignedHeaders=content-type;host;x-amz-date;x-amz-security-token"),
            "{authorization}"
        );
        assert_eq!(request.headers()["x-amz-security-token"], "token");
    }

    #[test]
    fn endpoints_must_be_http_urls() {
        assert!(Target::new("email.ap-northeast-1.amazonaws.com", "r").is_err());
        assert!(Target::new("ftp://x", "r").is_err());
        assert_eq!(
            Target::aws_endpoint("ap-northeast-1"),
            "https://email.ap-northeast-1.amazonaws.com"
        );
    }
}

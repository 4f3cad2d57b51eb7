//! One short sentence for an AWS SDK error, naming its cause: no credentials
//! (and where the default chain looked), access denied (and which
//! permission), credentials refused, throttled, endpoint unreachable, or the
//! service's own code and message.
//!
//! The SDK's `Debug` and `DisplayErrorContext` renderings run to a kilobyte
//! (`DispatchFailure(DispatchFailure { source: ConnectorError …`): fine in a
//! debug log, useless on a preflight line an operator reads at a cutover.
//! [`summarize`] is generic over every AWS SDK operation error (SES, SQS,
//! SSM…), so every preflight check words its failures the same way.

use std::error::Error;

use aws_sdk_sesv2::config::http::HttpResponse;
use aws_sdk_sesv2::error::{DisplayErrorContext, ProvideErrorMetadata, SdkError};

use crate::message::forward::ses::SesCode;

/// Longest summary returned; a preflight line adds its check name in front.
pub const MAX_SUMMARY: usize = 150;

/// Where the SDK's default credentials chain looks, in its order.
pub const CREDENTIALS_CHAIN: &str =
    "environment, ~/.aws/credentials and config, web identity token, ECS and EC2 instance metadata";

/// Summarizes `err`, which `action` (the IAM action, `ses:GetAccount`) failed
/// with, in one sentence of at most [`MAX_SUMMARY`] characters.
pub fn summarize<E>(action: &str, err: &SdkError<E, HttpResponse>) -> String
where
    E: ProvideErrorMetadata + Error + 'static,
{
    let chain = DisplayErrorContext(err).to_string();
    let status = err.raw_response().map(|raw| raw.status().as_u16());
    // An answer the SDK could not read a code from (an XML body to a JSON
    // client, a proxy's page): the body may still name it.
    let body_code = err
        .raw_response()
        .and_then(|raw| raw.body().bytes())
        .and_then(code_in_body);
    let text = match err {
        SdkError::ServiceError(_) | SdkError::ResponseError(_) => {
            service_error(action, err.code().or(body_code), err.message(), status)
        }
        SdkError::TimeoutError(_) => format!("{action}: no answer from the endpoint in time"),
        _ => transport_error(action, &chain),
    };
    shorten(&text, MAX_SUMMARY)
}

/// A refusal by the service, from its error code and message.
fn service_error(
    action: &str,
    code: Option<&str>,
    message: Option<&str>,
    status: Option<u16>,
) -> String {
    let message = message.unwrap_or("");
    let name = code.unwrap_or("");
    match SesCode::of(name) {
        SesCode::AccessDenied => {
            // "User: arn:… is not authorized to perform: ses:GetAccount on resource: …"
            let permission = message
                .split_once("perform: ")
                .and_then(|(_, rest)| rest.split_whitespace().next())
                .unwrap_or(action);
            format!("access denied: the credentials lack permission {permission}")
        }
        SesCode::CredentialsRefused => format!(
            "{action}: the AWS credentials were refused ({name}): check the key, secret and session token"
        ),
        SesCode::Throttled => format!("{action}: throttled by AWS, try again in a minute"),
        _ if name.is_empty() => match status {
            Some(status) => format!("{action}: HTTP {status} without an error code"),
            None => format!("{action}: an answer without an error code"),
        },
        _ if message.is_empty() => format!("{action}: {name}"),
        _ => format!("{action}: {name}: {message}"),
    }
}

/// A refused-credentials or access code named anywhere in a response body.
fn code_in_body(body: &[u8]) -> Option<&'static str> {
    let text = String::from_utf8_lossy(&body[..body.len().min(4096)]);
    SesCode::spellings(&[SesCode::CredentialsRefused, SesCode::AccessDenied])
        .find(|code| text.contains(code))
}

/// The request never got an answer: no credentials, no endpoint, TLS.
fn transport_error(action: &str, chain: &str) -> String {
    let lower = chain.to_ascii_lowercase();
    if lower.contains("noidentity")
        || lower.contains("no credentials")
        || lower.contains("credentials provider")
        || lower.contains("no providers in chain")
        || lower.contains("credentialsnotloaded")
        || lower.contains("failed to load credentials")
    {
        return format!("no AWS credentials found (looked in: {CREDENTIALS_CHAIN})");
    }
    let cause = if lower.contains("connection refused") {
        "connection refused"
    } else if lower.contains("dns error") || lower.contains("failed to lookup address") {
        "its name does not resolve"
    } else if lower.contains("timed out") || lower.contains("timeout") {
        "connection timed out"
    } else if lower.contains("certificate") || lower.contains("tls") {
        "TLS handshake failed (certificate not trusted?)"
    } else if lower.contains("region") {
        return format!("{action}: no AWS region set (ses.region or AWS_REGION)");
    } else if lower.contains("connection reset") || lower.contains("broken pipe") {
        "connection reset"
    } else {
        "the request could not be sent"
    };
    format!("{action}: endpoint unreachable: {cause}")
}

/// `text` cut to at most `max` characters at a word boundary, with `…`
/// (a word is cut only when it alone is longer than the line).
pub fn shorten(text: &str, max: usize) -> String {
    let text = text.split(['\r', '\n']).next().unwrap_or("").trim();
    if text.chars().count() <= max {
        return text.to_string();
    }
    let head: String = text.chars().take(max.saturating_sub(1)).collect();
    let cut = match head.rfind(' ') {
        Some(space) if space > head.len() / 2 => head[..space].trim_end_matches([',', ';', ':']),
        _ => head.as_str(),
    };
    format!("{cut}…")
}

#[cfg(test)]
mod tests {
    use super::*;
    use aws_sdk_sesv2::error::ErrorMetadata;
    use aws_sdk_sesv2::operation::get_account::GetAccountError;
    use aws_smithy_runtime_api::client::result::ConnectorError;
    use aws_smithy_types::body::SdkBody;

    fn service(code: &str, message: &str, status: u16) -> SdkError<GetAccountError, HttpResponse> {
        let err =
            GetAccountError::generic(ErrorMetadata::builder().code(code).message(message).build());
        let raw = HttpResponse::new(status.try_into().unwrap(), SdkBody::empty());
        SdkError::service_error(err, raw)
    }

    fn dispatch(source: Box<dyn Error + Send + Sync>) -> SdkError<GetAccountError, HttpResponse> {
        SdkError::dispatch_failure(ConnectorError::other(source, None))
    }

    #[test]
    fn access_denied_names_the_permission() {
        let err = service(
            "AccessDeniedException",
            "User: arn:aws:iam::123456789012:user/relay is not authorized to perform: ses:GetAccount on resource: *",
            403,
        );
        assert_eq!(
            summarize("ses:GetAccount", &err),
            "access denied: the credentials lack permission ses:GetAccount"
        );
        let err = service("AccessDenied", "", 403);
        assert_eq!(
            summarize("sqs:GetQueueAttributes", &err),
            "access denied: the credentials lack permission sqs:GetQueueAttributes"
        );
    }

    #[test]
    fn transport_failures_name_their_cause() {
        let refused = std::io::Error::new(
            std::io::ErrorKind::ConnectionRefused,
            "Connection refused (os error 111)",
        );
        let err = SdkError::<GetAccountError, HttpResponse>::dispatch_failure(ConnectorError::io(
            Box::new(refused),
        ));
        assert_eq!(
            summarize("ses:GetAccount", &err),
            "ses:GetAccount: endpoint unreachable: connection refused"
        );
        let err = dispatch("dns error: failed to lookup address information".into());
        assert!(summarize("ssm:GetParameter", &err).contains("does not resolve"));
        let err = dispatch("NoMatchingAuthScheme: ExploredList [sigv4: NoIdentity]".into());
        let text = summarize("ses:GetAccount", &err);
        assert!(
            text.starts_with("no AWS credentials found (looked in: environment"),
            "{text}"
        );
    }

    #[test]
    fn every_summary_is_one_short_line() {
        let long = "x".repeat(2000);
        for err in [
            service("MessageRejected", &format!("{long}\nsecond line"), 400),
            service("", "", 500),
            dispatch(long.clone().into()),
        ] {
            let text = summarize("ses:SendEmail", &err);
            assert!(text.chars().count() <= MAX_SUMMARY, "{text}");
            assert!(!text.is_empty());
            assert!(!text.contains('\n'), "{text}");
            assert!(!text.contains("DispatchFailure"), "{text}");
        }
        let err = service(
            "NotFoundException",
            "Email identity goo.ne.jp does not exist.",
            404,
        );
        assert_eq!(
            summarize("ses:GetEmailIdentity", &err),
            "ses:GetEmailIdentity: NotFoundException: Email identity goo.ne.jp does not exist."
        );
    }

    #[test]
    fn refused_credentials_are_named_from_an_xml_or_json_body() {
        for body in [
            "<ErrorResponse><Error><Type>Sender</Type><Code>InvalidClientTokenId</Code>\
             <Message>The security token included in the request is invalid.</Message></Error></ErrorResponse>",
            r#"{"__type":"com.amazon.coral.service#UnrecognizedClientException","message":"bad"}"#,
            "<Error><Code>SignatureDoesNotMatch</Code></Error>",
            r#"{"__type":"ExpiredTokenException"}"#,
        ] {
            let err = GetAccountError::generic(ErrorMetadata::builder().build());
            let raw = HttpResponse::new(403.try_into().unwrap(), SdkBody::from(body));
            let err = SdkError::service_error(err, raw);
            let text = summarize("ses:GetAccount", &err);
            assert!(
                text.contains("credentials were refused") || text.starts_with("access denied"),
                "{body}: {text}"
            );
        }
    }

    #[test]
    fn a_long_sentence_is_cut_at_a_word_and_says_failed_once() {
        let long = "word ".repeat(60);
        let text = shorten(&long, 50);
        assert!(text.ends_with("word…"), "{text}");
        assert!(text.chars().count() <= 50);
        let message = "a reason in many words ".repeat(20);
        let err = service("Oops", &message, 400);
        let text = summarize("ses:GetAccount", &err);
        assert!(!text.contains("failed"), "{text}");
        let whole = format!("ses:GetAccount: Oops: {}", message.trim());
        let kept = text.strip_suffix('…').expect("cut");
        assert!(whole.starts_with(kept), "{text}");
        assert_eq!(
            whole.as_bytes()[kept.len()],
            b' ',
            "cut inside a word: {text}"
        );
    }
}

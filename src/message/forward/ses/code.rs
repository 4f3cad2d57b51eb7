//! SES's error codes as a type: each code SES (v2, and v1's spellings that
//! the v2 API still answers with) may name is read here once, into [`SesCode`],
//! and everything downstream (the reply, the retry, the credentials cache, the
//! rollback guard, preflight's wording of any AWS answer) asks the type,
//! never the string. The credential, access and throttling codes are AWS-wide
//! (SSM and SQS answer with the same spellings), so this table serves them too.

/// What an SES error code means for the relay.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SesCode {
    /// `MessageRejected`: SES will not send this message (an unverified
    /// From or Return-Path identity in the sandbox, a virus, a content rule).
    MessageRejected,
    /// The custom MAIL FROM domain of the message's identity is not verified.
    MailFromDomainNotVerified,
    /// The request as built for this message is invalid (an illegal
    /// address, a missing header): `BadRequestException`, v1's `InvalidParameterValue`.
    BadRequest,
    /// A resource the request names does not exist (the configuration set):
    /// the relay's setup, not the message.
    NotFound,
    /// SES asks the relay to slow down.
    Throttled,
    /// A quota of the account (daily sending quota) is used up.
    LimitExceeded,
    /// Sending is paused for the account (or the configuration set).
    SendingPaused,
    /// The account is suspended.
    AccountSuspended,
    /// The credentials themselves were refused (expired or revoked early).
    CredentialsRefused,
    /// The credentials lack a permission (IAM): the relay's setup.
    AccessDenied,
    /// Any other code (service errors, codes newer than this list).
    Other,
}

/// Every spelling SES uses, the first of each kind being its canonical name.
const CODES: &[(&str, SesCode)] = &[
    ("MessageRejected", SesCode::MessageRejected),
    (
        "MailFromDomainNotVerifiedException",
        SesCode::MailFromDomainNotVerified,
    ),
    (
        "MailFromDomainNotVerified",
        SesCode::MailFromDomainNotVerified,
    ),
    ("BadRequestException", SesCode::BadRequest),
    ("BadRequest", SesCode::BadRequest),
    ("InvalidParameterValue", SesCode::BadRequest),
    ("NotFoundException", SesCode::NotFound),
    ("NotFound", SesCode::NotFound),
    ("TooManyRequestsException", SesCode::Throttled),
    ("TooManyRequests", SesCode::Throttled),
    ("Throttling", SesCode::Throttled),
    ("ThrottlingException", SesCode::Throttled),
    ("LimitExceededException", SesCode::LimitExceeded),
    ("LimitExceeded", SesCode::LimitExceeded),
    ("SendingPausedException", SesCode::SendingPaused),
    ("SendingPaused", SesCode::SendingPaused),
    ("AccountSuspendedException", SesCode::AccountSuspended),
    ("AccountSuspended", SesCode::AccountSuspended),
    // The longer spelling first: a body search must not stop at its prefix.
    ("ExpiredTokenException", SesCode::CredentialsRefused),
    ("ExpiredToken", SesCode::CredentialsRefused),
    ("InvalidClientTokenId", SesCode::CredentialsRefused),
    ("UnrecognizedClientException", SesCode::CredentialsRefused),
    ("InvalidSignatureException", SesCode::CredentialsRefused),
    ("SignatureDoesNotMatch", SesCode::CredentialsRefused),
    ("IncompleteSignature", SesCode::CredentialsRefused),
    ("AccessDeniedException", SesCode::AccessDenied),
    ("AccessDenied", SesCode::AccessDenied),
    ("UnauthorizedOperation", SesCode::AccessDenied),
];

impl SesCode {
    /// The kind of `code` (as SES wrote it, namespace already stripped).
    pub fn of(code: &str) -> SesCode {
        CODES
            .iter()
            .find(|(name, _)| *name == code)
            .map_or(SesCode::Other, |(_, kind)| *kind)
    }

    /// Every spelling of `kinds`, in the table's order (for finding a code
    /// in a body the SDK could not read one from).
    pub fn spellings(kinds: &[SesCode]) -> impl Iterator<Item = &'static str> + '_ {
        CODES
            .iter()
            .filter(move |(_, kind)| kinds.contains(kind))
            .map(|(name, _)| *name)
    }

    /// The canonical spelling (for a code the relay names itself, such as
    /// an HTTP 429 without one); `None` for [`SesCode::Other`].
    pub fn name(self) -> Option<&'static str> {
        CODES
            .iter()
            .find(|(_, kind)| *kind == self)
            .map(|(name, _)| *name)
    }

    /// SES refused this one message for what it is, and would refuse it
    /// again: a permanent per-message refusal, not a failure of SES. The
    /// rollback guard counts it as `rejected`, apart from failures.
    pub fn refuses_the_message(self) -> bool {
        matches!(
            self,
            SesCode::MessageRejected | SesCode::MailFromDomainNotVerified | SesCode::BadRequest
        )
    }

    /// The account cannot send at all: the rollback guard trips at once.
    pub fn stops_the_account(self) -> bool {
        matches!(self, SesCode::SendingPaused | SesCode::AccountSuspended)
    }

    /// SES asks for a slower rate: another attempt may succeed.
    pub fn is_throttling(self) -> bool {
        self == SesCode::Throttled
    }

    /// Permanent (5xx, Postfix bounces) rather than temporary: only what
    /// retrying cannot fix. Unknown codes are temporary: a wrong deferral
    /// costs a retry, a wrong bounce loses a message for good.
    pub fn is_permanent(self) -> bool {
        self.refuses_the_message() || self == SesCode::NotFound
    }

    /// The enhanced status code of the reply (RFC 3463).
    pub fn status(self) -> [u16; 3] {
        match self {
            SesCode::MessageRejected | SesCode::MailFromDomainNotVerified => [5, 7, 1],
            SesCode::BadRequest => [5, 6, 0],
            SesCode::NotFound => [5, 3, 0],
            SesCode::Throttled | SesCode::LimitExceeded => [4, 4, 5],
            SesCode::SendingPaused | SesCode::AccountSuspended => [4, 7, 0],
            SesCode::CredentialsRefused | SesCode::AccessDenied | SesCode::Other => [4, 3, 0],
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_spelling_reads_as_its_kind_and_unknown_codes_as_other() {
        for (code, kind) in CODES {
            assert_eq!(SesCode::of(code), *kind, "{code}");
        }
        assert_eq!(SesCode::of("InternalFailure"), SesCode::Other);
        assert_eq!(SesCode::of("messagerejected"), SesCode::Other);
        assert_eq!(SesCode::of(""), SesCode::Other);
        assert_eq!(
            SesCode::Throttled.name(),
            Some("TooManyRequestsException"),
            "the canonical name of an HTTP 429"
        );
        assert_eq!(SesCode::Other.name(), None);
    }

    #[test]
    fn only_per_message_refusals_are_rejections() {
        for code in [
            "MessageRejected",
            "MailFromDomainNotVerifiedException",
            "BadRequestException",
            "InvalidParameterValue",
        ] {
            let kind = SesCode::of(code);
            assert!(kind.refuses_the_message(), "{code}");
            assert!(kind.is_permanent(), "{code}");
        }
        for code in [
            "NotFoundException",
            "TooManyRequestsException",
            "LimitExceededException",
            "SendingPausedException",
            "AccountSuspendedException",
            "ExpiredToken",
            "InternalFailure",
        ] {
            assert!(!SesCode::of(code).refuses_the_message(), "{code}");
        }
        assert!(SesCode::of("SendingPaused").stops_the_account());
        assert!(SesCode::of("AccountSuspendedException").stops_the_account());
        assert!(!SesCode::of("MessageRejected").stops_the_account());
    }
}

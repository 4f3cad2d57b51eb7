//! Preparing a received message for its route: the `Received:` header for
//! this hop, the DKIM signature, and on the SES route the configuration-set
//! header. Header edits happen in the one buffer the message arrived in.
//!
//! Final header order, top down: `X-SES-CONFIGURATION-SET` (SES route, not
//! signed: SES removes it), `DKIM-Signature`, `Received`, then the client's
//! own headers minus the ones replaced here.
//!
//! On the SES route the message must also leave in the only shape SES takes,
//! and the operator alone steers SES:
//! - exactly one `From:` (SES refuses duplicates, and a key chosen from one of
//!   two Froms would lend our signature to the other): else `550 5.6.0`;
//! - at most one `DKIM-Signature` (SES: "Duplicate header 'DKIM-Signature'"):
//!   when we sign, every signature the message came with is removed, whatever
//!   its `d=` or bytes; when we do not, one is left alone and more are `554 5.6.0`;
//! - every client `X-SES-*` header is removed (SES acts on them: configuration
//!   set, tags, ARNs, tenant, list management); `X-SES-MESSAGE-TAGS` is carried
//!   over into the request's `EmailTags` (see [`tags`]).
//!
//! A header counts by its name compared without case, white space before the
//! colon ignored, as receivers and SES read it.

pub mod dkim;
pub mod headers;
pub mod pool;
pub mod rotation;
pub mod tags;

use std::net::IpAddr;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use mail_parser::MessageParser;

use self::dkim::{DkimKeys, DomainKey};
use self::headers::{Field, dkim_domain};
use crate::connection::smtp::Reply;
use crate::message::envelope::{Envelope, MessageTag};
use crate::message::route::Route;

/// The SES header that names the configuration set.
pub const CONFIGURATION_SET_HEADER: &str = "X-SES-CONFIGURATION-SET";

/// Prepares messages; one per relay, shared by all sessions.
pub struct Preparer {
    hostname: String,
    dkim: DkimKeys,
    configuration_set: String,
    /// `legacy.dkim-sign`: sign on the legacy route too.
    sign_legacy: bool,
    /// `[ses] tags`: sent with every SES message, winning over the message's own.
    default_tags: Vec<MessageTag>,
}

/// A message ready to go upstream.
#[derive(Debug)]
pub struct Prepared {
    /// The final bytes.
    pub message: Vec<u8>,
    /// `(domain, selector)` of the signature added, if any.
    pub signed_by: Option<(String, String)>,
    /// Time spent signing.
    pub sign_time: Duration,
    /// SES route: the `EmailTags` of the request (defaults and the message's own).
    pub tags: Vec<MessageTag>,
    /// SES route: the message's tags that were dropped, each with why.
    pub dropped_tags: Vec<String>,
}

/// Why a message could not be prepared.
#[derive(Debug, thiserror::Error)]
pub enum PrepareError {
    /// Signing failed: deferred, never sent unsigned.
    #[error("DKIM signing failed for d={domain}: {reason}")]
    Signing {
        /// The signing domain.
        domain: String,
        /// mail-auth's error.
        reason: String,
    },
    /// The message is not in a shape SES takes: refused, nothing sent.
    #[error(transparent)]
    Refused(#[from] Refusal),
}

/// A message the SES route refuses before any call, the client's to fix.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    /// Not exactly one `From:` header (RFC 5322 section 3.6 requires one; SES refuses duplicates).
    #[error("Message has {0} From: headers; exactly one is required")]
    FromCount(usize),
    /// A header field name with a byte outside RFC 5322 `ftext` (printable
    /// ASCII but the colon): a parser that trims such bytes reads another
    /// field than our checks did (`From\x0b:` as a second From).
    #[error("Message has a header field name with a control, space or 8-bit byte")]
    FieldName,
    /// The message starts with white space: a continuation line with no field
    /// to continue, which would extend our own `Received:`.
    #[error("Message starts with a folded line; the header section must start with a field name")]
    LeadingFold,
    /// Several `DKIM-Signature` headers and no key of ours to replace them.
    #[error(
        "Message carries {0} DKIM-Signature headers and there is no signing key here for its \
         From domain to replace them; SES accepts only one"
    )]
    Signatures(usize),
}

impl Refusal {
    /// The SMTP reply: `550 5.6.0` for the From count, `554 5.6.0` for the signatures.
    pub fn reply(&self) -> Reply {
        let code = match self {
            Refusal::FromCount(_) | Refusal::FieldName | Refusal::LeadingFold => 550,
            Refusal::Signatures(_) => 554,
        };
        Reply::dynamic(code, [5, 6, 0], self.to_string())
    }
}

impl Preparer {
    /// A preparer with this hop's name, the keys, the SES configuration set,
    /// and whether the legacy route is signed too.
    pub fn new(
        hostname: &str,
        dkim: DkimKeys,
        configuration_set: &str,
        sign_legacy: bool,
    ) -> Preparer {
        Preparer {
            hostname: hostname.to_string(),
            dkim,
            configuration_set: configuration_set.to_string(),
            sign_legacy,
            default_tags: Vec::new(),
        }
    }

    /// The `[ses] tags` sent with every SES message (validated with the config).
    pub fn with_default_tags<'a>(
        mut self,
        tags: impl IntoIterator<Item = (&'a String, &'a String)>,
    ) -> Preparer {
        self.default_tags = tags
            .into_iter()
            .map(|(name, value)| MessageTag {
                name: name.clone(),
                value: value.clone(),
            })
            .collect();
        self
    }

    /// The signing keys.
    pub fn dkim(&self) -> &DkimKeys {
        &self.dkim
    }

    /// Adds Received, signs, and sets route headers. CPU-heavy: call it off
    /// the async worker threads.
    pub fn prepare(
        &self,
        envelope: &Envelope,
        mut message: Vec<u8>,
    ) -> Result<Prepared, PrepareError> {
        let ses = envelope.route == Route::Ses;
        if matches!(message.first(), Some(b' ' | b'\t')) {
            return Err(Refusal::LeadingFold.into());
        }
        let received = self.received(envelope);
        let (head, received_len, old_head_len, signing, tags) = {
            let (fields, body_start) = headers::split(&message);
            if ses && fields.iter().any(|f| !f.has_plain_name()) {
                return Err(Refusal::FieldName.into());
            }
            let froms: Vec<&Field<'_>> = fields.iter().filter(|f| f.is("From")).collect();
            if ses && froms.len() != 1 {
                return Err(Refusal::FromCount(froms.len()).into());
            }
            let signs = ses || self.sign_legacy;
            // The key follows the one From there is; with two, neither is trusted.
            let key = match froms.as_slice() {
                [from] if signs => from_field_domain(from).and_then(|d| self.dkim.key_for(&d)),
                _ => None,
            };
            let signatures = fields.iter().filter(|f| f.is("DKIM-Signature")).count();
            if ses && key.is_none() && signatures > 1 {
                return Err(Refusal::Signatures(signatures).into());
            }
            let tags = ses.then(|| {
                tags::merge(
                    &self.default_tags,
                    fields
                        .iter()
                        .filter(|f| f.is(tags::MESSAGE_TAGS_HEADER))
                        .map(Field::value),
                )
            });
            let mut head = Vec::with_capacity(body_start + received.len());
            head.extend_from_slice(received.as_bytes());
            for field in &fields {
                if keeps(envelope.route, key, field) {
                    head.extend_from_slice(field.raw);
                }
            }
            let signing = key.map(|k| (k, self.dkim.signed_headers(&fields)));
            (head, received.len(), body_start, signing, tags)
        };
        message.splice(..old_head_len, head);

        let mut top = Vec::with_capacity(600);
        if ses {
            top.extend_from_slice(
                format!("{CONFIGURATION_SET_HEADER}: {}\r\n", self.configuration_set).as_bytes(),
            );
        }
        let started = Instant::now();
        let signed_by = match signing {
            Some((key, list)) => {
                let field = key.sign(&message[received_len..], &list).map_err(|err| {
                    PrepareError::Signing {
                        domain: key.domain.clone(),
                        reason: err.to_string(),
                    }
                })?;
                top.extend_from_slice(&field);
                Some((key.domain.clone(), key.selector.clone()))
            }
            None => None,
        };
        let sign_time = started.elapsed();
        message.splice(..0, top);
        let tags = tags.unwrap_or_default();
        Ok(Prepared {
            message,
            signed_by,
            sign_time,
            tags: tags.tags,
            dropped_tags: tags.dropped,
        })
    }

    /// The trace field for this hop (RFC 5321 section 4.4), with the transaction id.
    fn received(&self, envelope: &Envelope) -> String {
        let ip = match envelope.client.ip() {
            IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
                Some(v4) => v4.to_string(),
                None => format!("IPv6:{v6}"),
            },
            IpAddr::V4(v4) => v4.to_string(),
        };
        let protocol = match (envelope.mail.smtputf8, envelope.esmtp, envelope.tls) {
            (true, _, false) => "UTF8SMTP",
            (true, _, true) => "UTF8SMTPS",
            (false, true, true) => "ESMTPS",
            (false, true, false) => "ESMTP",
            (false, false, true) => "SMTPS",
            (false, false, false) => "SMTP",
        };
        // Naming the recipient only when there is one keeps Bcc recipients private.
        let recipient = match envelope.rcpt_to.as_slice() {
            [one] => format!("\r\n\tfor <{one}>"),
            _ => String::new(),
        };
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_secs() as i64)
            .unwrap_or(0);
        format!(
            "Received: from {helo} ([{ip}])\r\n\tby {host} (ses-relay) with {protocol} id {id}{recipient};\r\n\t{date}\r\n",
            helo = printable(&envelope.helo),
            host = self.hostname,
            id = envelope.id,
            date = mail_parser::DateTime::from_timestamp(now).to_rfc822(),
        )
    }
}

/// The client's EHLO name as it may stand in a trace field: printable ASCII,
/// anything else (8-bit, controls, white space) as `?`, and the comment and
/// date delimiters `(`, `)`, `;` too, so the name cannot shape our field.
fn printable(helo: &str) -> String {
    helo.chars()
        .map(|c| match c {
            '(' | ')' | ';' => '?',
            c if c.is_ascii_graphic() => c,
            _ => '?',
        })
        .collect()
}

/// Whether a client header survives on `route`, `key` being the key we sign with.
///
/// SES route: every `X-SES-*` header goes (ours is added on top), and when we
/// sign, every earlier signature goes, since SES accepts one. Legacy route:
/// only an earlier signature for the domain we sign for is replaced.
fn keeps(route: Route, key: Option<&DomainKey>, field: &Field<'_>) -> bool {
    let signature = field.is("DKIM-Signature");
    match route {
        Route::Ses => !(is_ses_header(field) || signature && key.is_some()),
        Route::Legacy => match key {
            Some(key) if signature => {
                dkim_domain(field.value()).as_deref() != Some(key.domain.as_str())
            }
            _ => true,
        },
    }
}

/// `X-SES-*`, in any case.
fn is_ses_header(field: &Field<'_>) -> bool {
    field
        .name
        .get(..6)
        .is_some_and(|prefix| prefix.eq_ignore_ascii_case(b"X-SES-"))
}

/// The domain of a `From:` field's first address, lowercased. The field is
/// read again under a plain `From:` name, so that `from :` reads like `From:`.
fn from_field_domain(field: &Field<'_>) -> Option<String> {
    let mut block = Vec::with_capacity(field.raw.len() + 8);
    block.extend_from_slice(b"From:");
    block.extend_from_slice(field.value());
    block.extend_from_slice(b"\r\n");
    header_from_domain(&block)
}

/// The domain of the first address in the header From, lowercased.
pub fn header_from_domain(header_block: &[u8]) -> Option<String> {
    let message = MessageParser::new().parse_headers(header_block)?;
    let from = message.from()?;
    // Several authors (RFC 5322 allows it with a Sender) are not ours to
    // vouch for: signing for the first would lend our domain to the others.
    if from.iter().count() != 1 || from.as_group().is_some() {
        return None;
    }
    let address = from.first()?.address()?;
    let (_, domain) = address.rsplit_once('@')?;
    Some(domain.trim_end_matches('>').to_ascii_lowercase())
}

#[cfg(test)]
mod tests;

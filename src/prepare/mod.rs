//! Preparing a received message for its route: the `Received:` header for
//! this hop, the DKIM signature, and on the SES route the configuration-set
//! header. Header edits happen in the one buffer the message arrived in.
//!
//! Final header order, top down: `X-SES-CONFIGURATION-SET` (SES route, not
//! signed: SES removes it), `DKIM-Signature`, `Received`, then the client's
//! own headers minus the ones replaced here.

pub mod dkim;
pub mod headers;
pub mod pool;

use std::net::IpAddr;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use mail_parser::MessageParser;

use self::dkim::DkimKeys;
use self::headers::{Field, dkim_domain};
use crate::envelope::Envelope;
use crate::route::Route;

/// The SES header that names the configuration set.
pub const CONFIGURATION_SET_HEADER: &str = "X-SES-CONFIGURATION-SET";

/// Prepares messages; one per relay, shared by all sessions.
pub struct Preparer {
    hostname: String,
    dkim: DkimKeys,
    configuration_set: String,
    /// `legacy.dkim-sign`: sign on the legacy route too.
    sign_legacy: bool,
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
}

/// Why a message could not be prepared (it is then deferred, never sent unsigned).
#[derive(Debug, thiserror::Error)]
#[error("DKIM signing failed for d={domain}: {reason}")]
pub struct PrepareError {
    /// The signing domain.
    pub domain: String,
    /// mail-auth's error.
    pub reason: String,
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
        }
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
        let received = self.received(envelope);
        let (head, received_len, old_head_len, signing) = {
            let (fields, body_start) = headers::split(&message);
            let signs = envelope.route == Route::Ses || self.sign_legacy;
            let key = header_from_domain(&message[..body_start])
                .filter(|_| signs)
                .and_then(|d| self.dkim.key_for(&d));
            let mut head = Vec::with_capacity(body_start + received.len());
            head.extend_from_slice(received.as_bytes());
            for field in &fields {
                if !self.keep(envelope.route, key.map(|k| k.domain.as_str()), field) {
                    continue;
                }
                head.extend_from_slice(field.raw);
            }
            let signing = key.map(|k| (k, self.dkim.signed_headers(&fields)));
            (head, received.len(), body_start, signing)
        };
        message.splice(..old_head_len, head);

        let mut top = Vec::with_capacity(600);
        if envelope.route == Route::Ses {
            top.extend_from_slice(
                format!("{CONFIGURATION_SET_HEADER}: {}\r\n", self.configuration_set).as_bytes(),
            );
        }
        let started = Instant::now();
        let signed_by = match signing {
            Some((key, list)) => {
                let field =
                    key.sign(&message[received_len..], &list)
                        .map_err(|err| PrepareError {
                            domain: key.domain.clone(),
                            reason: err.to_string(),
                        })?;
                top.extend_from_slice(&field);
                Some((key.domain.clone(), key.selector.clone()))
            }
            None => None,
        };
        let sign_time = started.elapsed();
        message.splice(..0, top);
        Ok(Prepared {
            message,
            signed_by,
            sign_time,
        })
    }

    /// Whether a client header survives: a client-supplied configuration set
    /// is replaced on the SES route; SES accepts one DKIM-Signature only
    /// ("554 Duplicate header 'DKIM-Signature'"), so one of ours replaces any
    /// earlier signature for the same domain.
    fn keep(&self, route: Route, signing_domain: Option<&str>, field: &Field<'_>) -> bool {
        if route == Route::Ses && field.is(CONFIGURATION_SET_HEADER) {
            return false;
        }
        if let Some(domain) = signing_domain
            && field.is("DKIM-Signature")
            && dkim_domain(field.value()).as_deref() == Some(domain)
        {
            return false;
        }
        true
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
        let protocol = match (envelope.smtputf8, envelope.esmtp, envelope.tls) {
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
            helo = envelope.helo,
            host = self.hostname,
            id = envelope.id,
            date = mail_parser::DateTime::from_timestamp(now).to_rfc822(),
        )
    }
}

/// The domain of the first address in the header From, lowercased.
pub fn header_from_domain(header_block: &[u8]) -> Option<String> {
    let message = MessageParser::new().parse_headers(header_block)?;
    let address = message.from()?.first()?.address()?;
    let (_, domain) = address.rsplit_once('@')?;
    Some(domain.trim_end_matches('>').to_ascii_lowercase())
}

#[cfg(test)]
mod tests;

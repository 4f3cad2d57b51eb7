//! DKIM keys and signing (mail-auth), with the header policy SES needs.
//!
//! Keys are loaded and test-signed at startup; a bad key stops startup with
//! its path in the message. Each message is signed over the headers it
//! actually has, from the configured list, plus one extra `From` so that a
//! second From added later breaks the signature (RFC 6376 section 8.15).

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use mail_auth::common::crypto::{Algorithm, DkimKey, Ed25519Key, RsaKey, Sha256, SigningKey};
use mail_auth::common::headers::{HeaderWriter, Writable};
use mail_auth::dkim::{Canonicalization, DkimSigner};
use rustls::pki_types::PrivateKeyDer;
use rustls::pki_types::pem::PemObject;

use super::headers::Field;
use super::rotation::RotationSet;
use crate::config::DkimConfig;

/// Smallest RSA modulus accepted (RFC 8301 requires 1024, SES BYODKIM and good practice 2048).
const MIN_RSA_BITS: usize = 2048;

/// Why a key could not be used.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    /// The file could not be read.
    #[error("DKIM key {path}: {source}")]
    Read {
        /// The key file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The file is not a usable private key.
    #[error("DKIM key {path}: {reason}")]
    Invalid {
        /// The key file.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
    /// `dkim.require-published`: no key of the domain has a matching DNS record.
    #[error(
        "dkim.require-published: no key of {domain} has a matching DNS record ({detail}); \
         publish one (ses-relay dkim dns-record) or set require-published = false"
    )]
    NotPublished {
        /// The domain.
        domain: String,
        /// Each key's record and why it does not match.
        detail: String,
    },
}

/// Why a published DKIM record does not carry this key.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RecordMismatch {
    /// `k=` names another algorithm.
    #[error("record has k={published}, our key is {ours}")]
    Algorithm {
        /// The record's `k=`.
        published: String,
        /// Ours: `rsa` or `ed25519`.
        ours: &'static str,
    },
    /// No `p=` tag at all.
    #[error("record has no p= tag")]
    NoKey,
    /// `p=` is empty: RFC 6376 section 3.6.1 says the key is revoked.
    #[error("record has an empty p= (key revoked)")]
    Revoked,
    /// `p=` does not decode.
    #[error("p= is not base64: {0}")]
    NotBase64(base64::DecodeError),
    /// `p=` is another key.
    #[error("the published public key does not match the private key")]
    OtherKey,
}

/// Why DER bytes are no usable RSA signing key.
#[derive(Debug, thiserror::Error)]
enum RsaKeyError {
    /// Not an RSA private key.
    #[error("{0}")]
    Parse(mail_auth::Error),
    /// Below [`MIN_RSA_BITS`].
    #[error("RSA key of about {0} bits; at least {MIN_RSA_BITS} are required")]
    TooSmall(usize),
}

/// A loaded key shared by all signing threads.
struct SharedKey(Arc<DkimKey>);

impl SigningKey for SharedKey {
    type Hasher = Sha256;

    fn sign(&self, input: impl Writable) -> mail_auth::Result<Vec<u8>> {
        self.0.sign(input)
    }

    fn algorithm(&self) -> Algorithm {
        self.0.algorithm()
    }
}

/// One signing identity.
pub struct DomainKey {
    /// `d=`, lowercased.
    pub domain: String,
    /// `s=`.
    pub selector: String,
    /// When the key was made: `created`, else the key file's modification time.
    pub created: SystemTime,
    key: Arc<DkimKey>,
}

/// When keys of a rotation set sign, from `[dkim]`.
#[derive(Debug, Clone, Copy)]
pub struct RotationPolicy {
    /// `publish-confirmations`.
    pub confirmations: u32,
    /// `rotation-check-interval`: the check's pace while a newer key waits.
    pub check_interval: Duration,
    /// `max-key-age - rotation-notice`: the signing key's age that calls for a rotation.
    pub notice_age: Duration,
}

/// All configured keys, their rotation sets and the signing policy.
pub struct DkimKeys {
    keys: Vec<DomainKey>,
    sets: Vec<RotationSet>,
    /// When a newer key of a set signs.
    pub policy: RotationPolicy,
    sign_subdomains: bool,
    headers: Vec<String>,
}

impl DkimKeys {
    /// Loads and checks every configured key.
    pub fn load(config: &DkimConfig) -> Result<DkimKeys, KeyError> {
        let mut keys = Vec::with_capacity(config.keys.len());
        for entry in &config.keys {
            let key = load_key(&entry.private_key)?;
            let created = match entry.created {
                Some(day) => day.0,
                None => std::fs::metadata(&entry.private_key)
                    .and_then(|m| m.modified())
                    .map_err(|source| KeyError::Read {
                        path: entry.private_key.clone(),
                        source,
                    })?,
            };
            let loaded = DomainKey {
                domain: entry.domain.to_ascii_lowercase(),
                selector: entry.selector.clone(),
                created,
                key: Arc::new(key),
            };
            // A key that parses but cannot sign must fail now, not on the first message.
            loaded
                .sign(b"From: a@example.com\r\n\r\n", &["From".to_string()])
                .map_err(|err| KeyError::Invalid {
                    path: entry.private_key.clone(),
                    reason: format!("test signature failed: {err}"),
                })?;
            keys.push(loaded);
        }
        let mut sets: Vec<RotationSet> = Vec::new();
        for (i, key) in keys.iter().enumerate() {
            if sets.iter().any(|s| s.domain == key.domain) {
                continue;
            }
            let members = (i..keys.len())
                .filter(|&j| keys[j].domain == key.domain)
                .collect();
            sets.push(RotationSet::new(key.domain.clone(), members));
        }
        Ok(DkimKeys {
            keys,
            sets,
            policy: RotationPolicy {
                confirmations: config.publish_confirmations.max(1),
                check_interval: config.rotation_check_interval.0,
                notice_age: config
                    .max_key_age
                    .0
                    .saturating_sub(config.rotation_notice.0),
            },
            sign_subdomains: config.sign_subdomains,
            headers: config.headers.clone(),
        })
    }

    /// The signing key for a header-From domain: its rotation set's signing
    /// key, for an exact match, else (with `sign-subdomains`) the closest
    /// parent domain that has keys.
    pub fn key_for(&self, from_domain: &str) -> Option<&DomainKey> {
        let domain = from_domain.trim_end_matches('.').to_ascii_lowercase();
        let mut candidate = domain.as_str();
        loop {
            if let Some(set) = self.sets.iter().find(|s| s.domain == candidate) {
                return Some(&self.keys[set.active()]);
            }
            if !self.sign_subdomains {
                return None;
            }
            candidate = candidate.split_once('.')?.1;
        }
    }

    /// The `h=` list for a message: configured headers it has, in configured
    /// order, each once, then From again (over-signing).
    pub fn signed_headers(&self, fields: &[Field<'_>]) -> Vec<String> {
        let mut list: Vec<String> = self
            .headers
            .iter()
            .filter(|h| fields.iter().any(|f| f.is(h)))
            .cloned()
            .collect();
        if list.iter().any(|h| h.eq_ignore_ascii_case("From")) {
            list.push("From".into());
        }
        list
    }

    /// Every loaded key, in config order.
    pub fn keys(&self) -> &[DomainKey] {
        &self.keys
    }

    /// One rotation set per domain, in the order the domains first appear.
    pub fn sets(&self) -> &[RotationSet] {
        &self.sets
    }

    /// Takes over the signing keys and check counts of `old` (the keys in
    /// force before a reload) for the keys both have: same domain, selector
    /// and public key. A reload thus never moves a domain back to an older key.
    pub fn carry_over(&self, old: &DkimKeys) {
        for set in &self.sets {
            if let Some(before) = old.sets.iter().find(|s| s.domain == set.domain) {
                set.carry_over(before, |a, b| self.keys[a].same_as(&old.keys[b]));
            }
        }
    }
}

/// RSA `AlgorithmIdentifier` (rsaEncryption, NULL parameters), DER.
const RSA_ALGORITHM: [u8; 15] = [
    0x30, 0x0d, 0x06, 0x09, 0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x01, 0x05, 0x00,
];

fn der_length(len: usize, out: &mut Vec<u8>) {
    if len < 0x80 {
        out.push(len as u8);
    } else {
        let bytes = len.to_be_bytes();
        let skip = bytes.iter().take_while(|&&b| b == 0).count();
        out.push(0x80 | (bytes.len() - skip) as u8);
        out.extend_from_slice(&bytes[skip..]);
    }
}

/// Wraps a PKCS#1 `RSAPublicKey` in a `SubjectPublicKeyInfo`, the form DKIM `p=` usually carries.
fn rsa_spki(pkcs1: &[u8]) -> Vec<u8> {
    let mut bits = vec![0x03];
    der_length(pkcs1.len() + 1, &mut bits);
    bits.push(0);
    bits.extend_from_slice(pkcs1);
    let mut out = vec![0x30];
    der_length(RSA_ALGORITHM.len() + bits.len(), &mut out);
    out.extend_from_slice(&RSA_ALGORITHM);
    out.extend_from_slice(&bits);
    out
}

/// The value of tag `name` in a DKIM tag list (RFC 6376 section 3.2: a
/// signature's `d=`, a key record's `p=` and `k=`), white space removed.
/// The one reader of tag lists.
pub fn tag_value(list: &str, name: &str) -> Option<String> {
    list.split(';').find_map(|tag| {
        let (tag_name, value) = tag.split_once('=')?;
        (tag_name.trim() == name).then(|| value.chars().filter(|c| !c.is_whitespace()).collect())
    })
}

impl DomainKey {
    /// Where the public key is published: `<selector>._domainkey.<domain>`.
    pub fn record_name(&self) -> String {
        format!("{}._domainkey.{}", self.selector, self.domain)
    }

    /// The TXT value to publish for this key.
    pub fn record_value(&self) -> String {
        use base64::Engine;
        let (kind, key) = self.public_key();
        let p = base64::engine::general_purpose::STANDARD.encode(key);
        format!("v=DKIM1; k={kind}; p={p}")
    }

    /// Whether `other` is this key: same domain, selector and public key.
    pub fn same_as(&self, other: &DomainKey) -> bool {
        self.domain == other.domain
            && self.selector == other.selector
            && self.public_key() == other.public_key()
    }

    /// Age now (zero for a date in the future).
    pub fn age(&self) -> Duration {
        SystemTime::now()
            .duration_since(self.created)
            .unwrap_or(Duration::ZERO)
    }

    /// `("rsa", SubjectPublicKeyInfo DER)` or `("ed25519", raw 32 bytes)`.
    fn public_key(&self) -> (&'static str, Vec<u8>) {
        match self.key.as_ref() {
            DkimKey::Rsa(key) => ("rsa", rsa_spki(&key.public_key())),
            DkimKey::Ed25519(key) => ("ed25519", key.public_key()),
        }
    }

    /// Checks that a published TXT record carries this key's public key.
    pub fn check_record(&self, record: &str) -> Result<(), RecordMismatch> {
        use base64::Engine;
        let (kind, ours) = self.public_key();
        let published_kind = tag_value(record, "k").unwrap_or_else(|| "rsa".into());
        if !published_kind.eq_ignore_ascii_case(kind) {
            return Err(RecordMismatch::Algorithm {
                published: published_kind,
                ours: kind,
            });
        }
        let p = tag_value(record, "p").ok_or(RecordMismatch::NoKey)?;
        if p.is_empty() {
            return Err(RecordMismatch::Revoked);
        }
        let published = base64::engine::general_purpose::STANDARD
            .decode(&p)
            .map_err(RecordMismatch::NotBase64)?;
        // Some publish the bare PKCS#1 RSAPublicKey rather than SubjectPublicKeyInfo.
        let bare = match self.key.as_ref() {
            DkimKey::Rsa(key) => key.public_key(),
            DkimKey::Ed25519(_) => Vec::new(),
        };
        if published == ours || (!bare.is_empty() && published == bare) {
            Ok(())
        } else {
            Err(RecordMismatch::OtherKey)
        }
    }

    /// Signs `message` (headers and body, as they will be sent) and returns the
    /// `DKIM-Signature:` field, CRLF-terminated.
    pub fn sign(&self, message: &[u8], headers: &[String]) -> mail_auth::Result<Vec<u8>> {
        let signature = DkimSigner::from_key(SharedKey(self.key.clone()))
            .domain(&self.domain)
            .selector(&self.selector)
            .headers(headers.iter().map(String::as_str))
            .header_canonicalization(Canonicalization::Relaxed)
            .body_canonicalization(Canonicalization::Relaxed)
            .sign(message)?;
        let mut field = Vec::with_capacity(512);
        signature.write_header(&mut field);
        Ok(field)
    }
}

fn load_key(path: &Path) -> Result<DkimKey, KeyError> {
    let invalid = |reason: String| KeyError::Invalid {
        path: path.to_path_buf(),
        reason,
    };
    let pem = std::fs::read(path).map_err(|source| KeyError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    let der = PrivateKeyDer::from_pem_slice(&pem)
        .map_err(|err| invalid(format!("no PEM private key found ({err})")))?;
    match der {
        PrivateKeyDer::Pkcs1(_) => rsa_key(der).map_err(|err| invalid(err.to_string())),
        PrivateKeyDer::Pkcs8(ref pkcs8) => {
            let bytes = pkcs8.secret_pkcs8_der().to_vec();
            match rsa_key(der) {
                Ok(key) => Ok(key),
                Err(rsa_err) => Ed25519Key::from_pkcs8_maybe_unchecked_der(&bytes)
                    .map(DkimKey::Ed25519)
                    .map_err(|_| {
                        invalid(format!(
                            "neither a usable RSA nor an Ed25519 key ({rsa_err})"
                        ))
                    }),
            }
        }
        _ => Err(invalid(
            "SEC1 (EC) keys are not DKIM keys: use RSA or Ed25519".into(),
        )),
    }
}

fn rsa_key(der: PrivateKeyDer<'_>) -> Result<DkimKey, RsaKeyError> {
    let key = RsaKey::<Sha256>::from_key_der(der).map_err(RsaKeyError::Parse)?;
    // The public key is DER RSAPublicKey: its size tracks the modulus.
    let bits = key.public_key().len().saturating_sub(14) * 8;
    if bits < MIN_RSA_BITS {
        return Err(RsaKeyError::TooSmall(bits));
    }
    Ok(DkimKey::Rsa(key))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::DkimKeyConfig;
    use crate::message::prepare::headers::split;

    fn keys(sign_subdomains: bool) -> DkimKeys {
        let config = DkimConfig {
            keys: vec![DkimKeyConfig {
                domain: "goo.ne.jp".into(),
                selector: "sel".into(),
                private_key: concat!(env!("CARGO_MANIFEST_DIR"), "/etc/dev/dkim-demo.pem").into(),
                created: None,
            }],
            sign_subdomains,
            ..DkimConfig::default()
        };
        DkimKeys::load(&config).unwrap()
    }

    #[test]
    fn key_choice_exact_and_subdomain() {
        let with = keys(true);
        assert_eq!(with.key_for("goo.ne.jp").unwrap().domain, "goo.ne.jp");
        assert_eq!(with.key_for("News.Goo.ne.jp").unwrap().domain, "goo.ne.jp");
        assert!(with.key_for("ne.jp").is_none());
        assert!(with.key_for("example.com").is_none());
        assert!(with.key_for("evilgoo.ne.jp").is_none());
        let without = keys(false);
        assert!(without.key_for("news.goo.ne.jp").is_none());
        assert!(without.key_for("goo.ne.jp").is_some());
    }

    #[test]
    fn signed_headers_are_the_present_ones_with_from_twice() {
        let msg = b"Received: x\r\nFrom: a@goo.ne.jp\r\nTo: b@example.com\r\nSUBJECT: hi\r\nMessage-ID: <1@x>\r\nDate: now\r\nX-SES-CONFIGURATION-SET: cs\r\nList-Unsubscribe: <mailto:u@x>\r\n\r\nbody\r\n";
        let (fields, _) = split(msg);
        let list = keys(true).signed_headers(&fields);
        assert_eq!(list, ["From", "Subject", "To", "List-Unsubscribe", "From"]);
    }

    #[test]
    fn dns_record_is_the_spki_openssl_makes() {
        let keys = keys(true);
        let key = &keys.keys()[0];
        let published = std::fs::read_to_string(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/etc/dev/dkim-demo.txt"
        ))
        .unwrap();
        assert_eq!(key.record_value(), published.trim());
        assert_eq!(key.record_name(), "sel._domainkey.goo.ne.jp");
        assert_eq!(key.check_record(published.trim()), Ok(()));
        // Split across strings with white space, as DNS answers often come.
        let spaced = published.trim().replacen("p=MIIB", "p= MIIB ", 1);
        assert_eq!(key.check_record(&spaced), Ok(()));
        assert!(
            key.check_record("v=DKIM1; k=rsa; p=")
                .unwrap_err()
                .to_string()
                .contains("revoked")
        );
        assert!(
            key.check_record("v=DKIM1; k=ed25519; p=AAAA")
                .unwrap_err()
                .to_string()
                .contains("k=ed25519")
        );
        let other = published.trim().replace("p=MIIB", "p=MIIC");
        assert!(key.check_record(&other).is_err());
    }

    #[test]
    fn bad_keys_name_their_path() {
        let dir = std::env::temp_dir().join(format!("ses-relay-badkey-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let garbage = dir.join("garbage.pem");
        std::fs::write(&garbage, "not a key").unwrap();
        for path in [garbage.clone(), dir.join("missing.pem")] {
            let err = match load_key(&path) {
                Ok(_) => panic!("{} loaded", path.display()),
                Err(err) => err.to_string(),
            };
            assert!(err.contains(&path.display().to_string()), "{err}");
        }
        std::fs::remove_dir_all(&dir).ok();
    }
}

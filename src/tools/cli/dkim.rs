//! `ses-relay dkim dns-record`: for each configured key, the TXT record to
//! hand to the DNS team, in zone-file syntax; `ses-relay dkim new-key`: a
//! new RSA-2048 key for a rotation, with everything to do next.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::config::{DkimConfig, DkimKeyConfig, KeyDate};
use crate::message::prepare::dkim::{DkimKeys, KeyError};

/// Longest string in a TXT record (RFC 1035 section 3.3.14: a length byte
/// and its bytes); a longer value is split into several, which resolvers join.
const TXT_STRING_MAX: usize = 255;

/// `ses-relay dkim dns-record`.
pub fn dns_record(path: Option<&Path>) -> ExitCode {
    let Some(config) = super::or_report(super::read_config(path)) else {
        return ExitCode::FAILURE;
    };
    let keys = match DkimKeys::load(&config.dkim) {
        Ok(keys) => keys,
        Err(err) => {
            eprintln!("{err}");
            return ExitCode::FAILURE;
        }
    };
    for key in keys.keys() {
        println!("{}", zone_line(key));
    }
    ExitCode::SUCCESS
}

/// A key's TXT record in zone-file syntax, its value in 255-byte strings.
fn zone_line(key: &crate::message::prepare::dkim::DomainKey) -> String {
    format!(
        "{}. 3600 IN TXT ( {} )",
        key.record_name(),
        txt_strings(&key.record_value())
    )
}

/// Why `dkim new-key` wrote no key.
#[derive(Debug, thiserror::Error)]
pub enum NewKeyError {
    /// `--domain` is not a domain name.
    #[error("--domain `{0}` is not a domain name")]
    Domain(String),
    /// `--selector` is not a selector (DNS labels).
    #[error("--selector `{0}` is not a selector (letters, digits, - and _, dot-separated)")]
    Selector(String),
    /// `--out` exists: a key is never overwritten (it may be the one signing now).
    #[error("{0} exists; a key file is never overwritten (choose another --out)")]
    Exists(PathBuf),
    /// The file could not be written.
    #[error("cannot write {path}: {source}")]
    Write {
        /// The key file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// aws-lc could not make a key.
    #[error("RSA key generation failed")]
    Generate,
    /// The written key does not load back.
    #[error(transparent)]
    Load(#[from] KeyError),
}

/// A new RSA-2048 private key, PKCS#8 PEM.
pub fn generate_rsa_pem() -> Result<String, NewKeyError> {
    use aws_lc_rs::encoding::{AsDer, Pkcs8V1Der};
    use base64::Engine;
    let pair = aws_lc_rs::rsa::KeyPair::generate(aws_lc_rs::rsa::KeySize::Rsa2048)
        .map_err(|_| NewKeyError::Generate)?;
    let der: Pkcs8V1Der<'static> = pair.as_der().map_err(|_| NewKeyError::Generate)?;
    let body = base64::engine::general_purpose::STANDARD.encode(der.as_ref());
    let mut pem = String::from("-----BEGIN PRIVATE KEY-----\n");
    // RFC 7468: 64 characters a line.
    for line in body.as_bytes().chunks(64) {
        pem.push_str(&String::from_utf8_lossy(line));
        pem.push('\n');
    }
    pem.push_str("-----END PRIVATE KEY-----\n");
    Ok(pem)
}

/// Writes the key (mode 0600, never over an existing file) and returns its
/// `[[dkim.keys]]` entry, dated today.
pub fn write_new_key(
    domain: &str,
    selector: &str,
    out: &Path,
) -> Result<DkimKeyConfig, NewKeyError> {
    let domain = domain.trim_end_matches('.').to_ascii_lowercase();
    if !crate::config::is_domain(&domain) {
        return Err(NewKeyError::Domain(domain));
    }
    if !selector.split('.').all(crate::config::is_label) {
        return Err(NewKeyError::Selector(selector.to_string()));
    }
    let pem = generate_rsa_pem()?;
    let write_error = |source| NewKeyError::Write {
        path: out.to_path_buf(),
        source,
    };
    let mut file = {
        use std::os::unix::fs::OpenOptionsExt;
        std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(out)
            .map_err(|err| match err.kind() {
                std::io::ErrorKind::AlreadyExists => NewKeyError::Exists(out.to_path_buf()),
                _ => write_error(err),
            })?
    };
    file.write_all(pem.as_bytes())
        .and_then(|()| file.sync_all())
        .map_err(write_error)?;
    let today = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() / 86_400 * 86_400);
    Ok(DkimKeyConfig {
        domain,
        selector: selector.to_string(),
        private_key: std::fs::canonicalize(out).unwrap_or_else(|_| out.to_path_buf()),
        created: Some(KeyDate(UNIX_EPOCH + Duration::from_secs(today))),
    })
}

/// `ses-relay dkim new-key --domain D --selector S --out FILE`.
pub fn new_key(domain: &str, selector: &str, out: &Path) -> ExitCode {
    let result = write_new_key(domain, selector, out).and_then(|entry| {
        let config = DkimConfig {
            keys: vec![entry.clone()],
            ..DkimConfig::default()
        };
        Ok((DkimKeys::load(&config)?, entry))
    });
    let (keys, entry) = match result {
        Ok(done) => done,
        Err(err) => {
            eprintln!("{err}");
            return ExitCode::FAILURE;
        }
    };
    print!("{}", new_key_report(&keys.keys()[0], &entry));
    ExitCode::SUCCESS
}

/// What `new-key` prints: the record, the config block, the SES command, in
/// the runbook's order.
fn new_key_report(key: &crate::message::prepare::dkim::DomainKey, entry: &DkimKeyConfig) -> String {
    let path = entry.private_key.display();
    let created = entry.created.map(|d| d.to_string()).unwrap_or_default();
    format!(
        "# New RSA-2048 DKIM key written to {path} (mode 0600).\n\
         \n\
         # 1. Publish this TXT record (strings of at most 255 bytes):\n\
         {zone}\n\
         \n\
         # 2. Append to the relay's config, then reload (SIGHUP). The relay signs with\n\
         #    this key only once the record above matched on dkim.publish-confirmations checks:\n\
         [[dkim.keys]]\n\
         domain = \"{domain}\"\n\
         selector = \"{selector}\"\n\
         private-key = \"{path}\"\n\
         created = \"{created}\"\n\
         \n\
         # 3. Move SES's BYODKIM identity to the same selector\n\
         #    (SigningAttributesOrigin=EXTERNAL, DomainSigningSelector={selector}):\n\
         aws sesv2 put-email-identity-dkim-signing-attributes --email-identity {domain} \\\n\
         \x20   --signing-attributes-origin EXTERNAL \\\n\
         \x20   --signing-attributes \"DomainSigningSelector={selector},DomainSigningPrivateKey=$(grep -v -- ----- '{path}' | tr -d '\\n')\"\n",
        zone = zone_line(key),
        domain = key.domain,
        selector = key.selector,
    )
}

/// `value` as quoted strings of at most [`TXT_STRING_MAX`] bytes, space-separated.
fn txt_strings(value: &str) -> String {
    value
        .as_bytes()
        .chunks(TXT_STRING_MAX)
        .map(|chunk| format!("\"{}\"", String::from_utf8_lossy(chunk)))
        .collect::<Vec<_>>()
        .join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn txt_values_split_at_255_bytes() {
        assert_eq!(txt_strings("v=DKIM1"), "\"v=DKIM1\"");
        let value = "a".repeat(255) + "bc";
        assert_eq!(
            txt_strings(&value),
            format!("\"{}\" \"bc\"", "a".repeat(255))
        );
        assert_eq!(txt_strings(&"a".repeat(510)).matches('"').count(), 4);
    }
}

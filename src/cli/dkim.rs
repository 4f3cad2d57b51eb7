//! `ses-relay dkim dns-record`: for each configured key, the TXT record to
//! hand to the DNS team, in zone-file syntax.

use std::path::Path;
use std::process::ExitCode;

use crate::prepare::dkim::DkimKeys;

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
        println!(
            "{}. 3600 IN TXT ( {} )",
            key.record_name(),
            txt_strings(&key.record_value())
        );
    }
    ExitCode::SUCCESS
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

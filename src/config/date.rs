//! A calendar day written `YYYY-MM-DD` (UTC), as `[[dkim.keys]] created` takes it.

use std::fmt;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// Midnight UTC of a day written `YYYY-MM-DD`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct KeyDate(pub SystemTime);

/// Why a day does not read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("`{0}` is not a date (expected YYYY-MM-DD, e.g. 2025-09-12)")]
pub struct DateError(pub String);

impl KeyDate {
    /// Parses `2025-09-12`: exactly four, two and two digits, a real day, not before 1970.
    pub fn parse(text: &str) -> Result<KeyDate, DateError> {
        let bad = || DateError(text.to_string());
        let shape = text.len() == 10
            && text.bytes().enumerate().all(|(i, b)| match i {
                4 | 7 => b == b'-',
                _ => b.is_ascii_digit(),
            });
        if !shape {
            return Err(bad());
        }
        humantime::parse_rfc3339(&format!("{text}T00:00:00Z"))
            .map(KeyDate)
            .map_err(|_| bad())
    }

    /// Seconds since the Unix epoch.
    pub fn unix_seconds(self) -> u64 {
        self.0
            .duration_since(UNIX_EPOCH)
            .unwrap_or(Duration::ZERO)
            .as_secs()
    }
}

impl fmt::Display for KeyDate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // humantime prints `2025-09-12T00:00:00Z`; the day is the first ten bytes.
        let full = humantime::format_rfc3339_seconds(self.0).to_string();
        f.write_str(&full[..10])
    }
}

impl<'de> Deserialize<'de> for KeyDate {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        KeyDate::parse(&text).map_err(serde::de::Error::custom)
    }
}

impl Serialize for KeyDate {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn days_read_and_print_back() {
        let day = KeyDate::parse("2025-09-12").unwrap();
        assert_eq!(day.unix_seconds(), 1_757_635_200);
        assert_eq!(day.to_string(), "2025-09-12");
        for bad in [
            "2025-9-12",
            "2025-02-30",
            "12-09-2025",
            "2025/09/12",
            "",
            "2025-09-12 ",
        ] {
            assert!(KeyDate::parse(bad).is_err(), "{bad}");
        }
    }
}

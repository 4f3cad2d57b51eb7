//! Human-readable sizes ("40MiB") and durations ("5m", "30s") for the config file.
//!
//! Both also accept a bare integer (bytes, seconds), because environment
//! overrides and older configs often carry plain numbers.

use std::fmt;
use std::time::Duration;

use serde::de::{self, Deserializer, Visitor};
use serde::{Deserialize, Serialize, Serializer};

/// A byte count written as `40MiB`, `10MB`, `512KiB` or a plain number of bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct ByteSize(pub u64);

/// A duration written as `5m`, `30s`, `1h 30m` (humantime syntax) or a plain number of seconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct HumanDuration(pub Duration);

/// The longest duration the config takes: a year is past any timeout,
/// interval or window a relay needs, and far from where a deadline
/// (`now + duration`) would overflow the clock.
pub const MAX_DURATION: Duration = Duration::from_secs(365 * 24 * 3600);

/// Why a size or duration in the config does not read; serde puts the key in front.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum UnitError {
    /// No leading number.
    #[error("`{0}` is not a size (expected e.g. 40MiB)")]
    NotASize(String),
    /// A unit other than B, K(i)B, M(i)B, G(i)B.
    #[error("unknown size unit `{unit}` in `{text}`")]
    UnknownUnit {
        /// The unit as written.
        unit: String,
        /// The whole value.
        text: String,
    },
    /// More bytes than a u64 holds.
    #[error("size `{0}` is too large")]
    TooLarge(String),
    /// Longer than [`MAX_DURATION`].
    #[error("`{0}` is too long (at most 365 days)")]
    TooLong(String),
    /// Neither seconds nor humantime syntax.
    #[error("`{text}` is not a duration (expected e.g. 30s, 5m): {source}")]
    NotADuration {
        /// The value as written.
        text: String,
        /// humantime's reason.
        source: humantime::DurationError,
    },
}

impl ByteSize {
    /// Parses `40MiB`, `40 MiB`, `10MB`, `4096`. Binary (KiB, MiB, GiB) and decimal (KB, MB, GB) units.
    pub fn parse(text: &str) -> Result<Self, UnitError> {
        let text = text.trim();
        let split = text
            .find(|c: char| !c.is_ascii_digit())
            .unwrap_or(text.len());
        let (digits, unit) = text.split_at(split);
        let number: u64 = digits
            .parse()
            .map_err(|_| UnitError::NotASize(text.to_string()))?;
        let factor: u64 = match unit.trim().to_ascii_lowercase().as_str() {
            "" | "b" => 1,
            "k" | "kb" => 1_000,
            "kib" => 1 << 10,
            "m" | "mb" => 1_000_000,
            "mib" => 1 << 20,
            "g" | "gb" => 1_000_000_000,
            "gib" => 1 << 30,
            other => {
                return Err(UnitError::UnknownUnit {
                    unit: other.to_string(),
                    text: text.to_string(),
                });
            }
        };
        number
            .checked_mul(factor)
            .map(ByteSize)
            .ok_or_else(|| UnitError::TooLarge(text.to_string()))
    }

    /// The size as a `usize`, saturating on 32-bit targets.
    pub fn as_usize(self) -> usize {
        usize::try_from(self.0).unwrap_or(usize::MAX)
    }
}

impl HumanDuration {
    /// Parses `5m`, `30s`, `250ms`, `1h 30m`, or a bare number of seconds.
    pub fn parse(text: &str) -> Result<Self, UnitError> {
        let text = text.trim();
        let duration = match text.parse::<u64>() {
            Ok(seconds) => Duration::from_secs(seconds),
            Err(_) => {
                humantime::parse_duration(text).map_err(|source| UnitError::NotADuration {
                    text: text.to_string(),
                    source,
                })?
            }
        };
        HumanDuration::bounded(duration, text)
    }

    /// `duration`, unless it is longer than [`MAX_DURATION`].
    fn bounded(duration: Duration, text: &str) -> Result<Self, UnitError> {
        if duration > MAX_DURATION {
            return Err(UnitError::TooLong(text.to_string()));
        }
        Ok(HumanDuration(duration))
    }
}

impl fmt::Display for ByteSize {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        const MIB: u64 = 1 << 20;
        const KIB: u64 = 1 << 10;
        match self.0 {
            n if n >= MIB && n % MIB == 0 => write!(f, "{}MiB", n / MIB),
            n if n >= KIB && n % KIB == 0 => write!(f, "{}KiB", n / KIB),
            n => write!(f, "{n}"),
        }
    }
}

impl fmt::Display for HumanDuration {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", humantime::format_duration(self.0))
    }
}

struct UnitVisitor<T>(
    fn(&str) -> Result<T, UnitError>,
    fn(u64) -> Result<T, UnitError>,
    &'static str,
);

impl<T> Visitor<'_> for UnitVisitor<T> {
    type Value = T;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.2)
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<T, E> {
        (self.0)(v).map_err(E::custom)
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> Result<T, E> {
        (self.1)(v).map_err(E::custom)
    }

    fn visit_i64<E: de::Error>(self, v: i64) -> Result<T, E> {
        let v = u64::try_from(v).map_err(|_| E::custom("must not be negative"))?;
        self.visit_u64(v)
    }
}

impl<'de> Deserialize<'de> for ByteSize {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(UnitVisitor(
            ByteSize::parse,
            |n| Ok(ByteSize(n)),
            "a size such as \"40MiB\"",
        ))
    }
}

impl<'de> Deserialize<'de> for HumanDuration {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(UnitVisitor(
            HumanDuration::parse,
            |s| HumanDuration::bounded(Duration::from_secs(s), &s.to_string()),
            "a duration such as \"30s\" or \"5m\"",
        ))
    }
}

impl Serialize for ByteSize {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl Serialize for HumanDuration {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

/// The dotted paths of a serialized config's numeric keys: every integer,
/// float, duration (`"5m"`) and size (`"40MiB"`) leaf (arrays hold none).
/// The config tests and the config fuzz target give each hostile values, so
/// a key added to the structs is tried without touching either.
#[doc(hidden)]
pub fn numeric_keys(value: &toml::Value) -> Vec<Vec<String>> {
    fn walk(value: &toml::Value, path: &mut Vec<String>, out: &mut Vec<Vec<String>>) {
        match value {
            toml::Value::Table(table) => {
                for (key, value) in table {
                    path.push(key.clone());
                    walk(value, path, out);
                    path.pop();
                }
            }
            toml::Value::Integer(_) | toml::Value::Float(_) => out.push(path.clone()),
            toml::Value::String(text)
                if HumanDuration::parse(text).is_ok() || ByteSize::parse(text).is_ok() =>
            {
                out.push(path.clone())
            }
            _ => {}
        }
    }
    let mut out = Vec::new();
    walk(value, &mut Vec::new(), &mut out);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes() {
        assert_eq!(ByteSize::parse("40MiB").unwrap().0, 40 * 1024 * 1024);
        assert_eq!(ByteSize::parse("40 MiB").unwrap().0, 40 * 1024 * 1024);
        assert_eq!(ByteSize::parse("10MB").unwrap().0, 10_000_000);
        assert_eq!(ByteSize::parse("4096").unwrap().0, 4096);
        assert_eq!(ByteSize::parse("1kib").unwrap().0, 1024);
        assert!(ByteSize::parse("40 parsecs").is_err());
        assert!(ByteSize::parse("MiB").is_err());
        assert!(ByteSize::parse("99999999999999GiB").is_err());
        assert_eq!(ByteSize(40 << 20).to_string(), "40MiB");
    }

    #[test]
    fn durations() {
        assert_eq!(
            HumanDuration::parse("5m").unwrap().0,
            Duration::from_secs(300)
        );
        assert_eq!(
            HumanDuration::parse("30s").unwrap().0,
            Duration::from_secs(30)
        );
        assert_eq!(
            HumanDuration::parse("250ms").unwrap().0,
            Duration::from_millis(250)
        );
        assert_eq!(
            HumanDuration::parse("45").unwrap().0,
            Duration::from_secs(45)
        );
        assert!(HumanDuration::parse("soon").is_err());
        assert_eq!(HumanDuration::parse("365d").unwrap().0, MAX_DURATION);
        for too_long in [
            "366d",
            "1000000000000d",
            "18446744073709551615",
            "584942417355y",
        ] {
            assert!(HumanDuration::parse(too_long).is_err(), "{too_long}");
        }
    }
}

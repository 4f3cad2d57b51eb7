//! What `ses-relay cutover` needs besides the HTTP call: reading the
//! percentage an operator typed (with a clear word for every mistake) and
//! printing `GET /cutover` as a short table.
//!
//! The table prints every field of the answer it knows in a fixed order, then
//! any other field the relay sends (`guard`, `store`, `version`,
//! `refreshed_at`, or what comes later), so the command never has to change
//! when the API grows.

use serde_json::Value;

use crate::message::route::check_percent;

/// Why a typed percentage is refused.
#[derive(Debug, thiserror::Error)]
pub enum PercentError {
    /// Not a number at all (NaN included).
    #[error("{0:?} is not a number: give a percentage from 0 to 100, like 10 or 12.5")]
    NotANumber(String),
    /// A number the cutover refuses (negative, above 100, too precise).
    #[error(transparent)]
    Refused(crate::message::route::PercentError),
}

/// Reads a percentage typed on the command line: a number from 0 to 100 with
/// at most two decimals (the router resolves 0.01 %), so what is set is
/// exactly what every place shows afterwards.
///
/// An integer is read as one (`-0` is 0, as in JSON and TOML); anything
/// else as a decimal number, through the same one validation as every other
/// source (`-0.0` is refused as negative).
pub fn parse_percent(text: &str) -> Result<f64, PercentError> {
    let trimmed = text.trim().trim_end_matches('%').trim();
    let value: f64 = match trimmed.parse::<i64>() {
        Ok(integer) => integer as f64,
        Err(_) => trimmed
            .parse()
            .map_err(|_| PercentError::NotANumber(text.to_string()))?,
    };
    check_percent(value).map_err(|err| match err {
        crate::message::route::PercentError::OutOfRange(v) if v.is_nan() => {
            PercentError::NotANumber(text.to_string())
        }
        other => PercentError::Refused(other),
    })?;
    Ok(value)
}

/// Field order of the table, with the label each is printed under.
const KNOWN: &[(&str, &str)] = &[
    ("ses_percent", "percentage"),
    ("source", "source"),
    ("updated_at", "since"),
    ("reason", "reason"),
    ("legacy_route", "legacy route"),
    ("rules", "rules"),
    ("guard", "guard"),
    ("store", "store"),
    ("version", "version"),
    ("refreshed_at", "refreshed at"),
];

/// `GET /cutover` as a short table, one `label  value` line per field present.
pub fn status_table(status: &Value) -> String {
    let Some(fields) = status.as_object() else {
        return format!("{}\n", render(status));
    };
    let mut rows: Vec<(String, String)> = Vec::new();
    for (key, label) in KNOWN {
        let Some(value) = fields.get(*key) else {
            continue;
        };
        let text = match *key {
            "ses_percent" => match value.as_f64() {
                Some(p) => format!("{p} % to SES, {} % to legacy", round2(100.0 - p)),
                None => render(value),
            },
            "updated_at" if value.is_null() => "never changed at runtime".to_string(),
            "reason" if value.is_null() => "–".to_string(),
            "legacy_route" => match value.as_bool() {
                Some(true) => "configured".to_string(),
                Some(false) => "none (SES only)".to_string(),
                None => render(value),
            },
            "rules" => rules(value),
            _ => render(value),
        };
        rows.push((label.to_string(), text));
    }
    for (key, value) in fields {
        if !KNOWN.iter().any(|(k, _)| k == key) {
            rows.push((key.replace('_', " "), render(value)));
        }
    }
    let width = rows.iter().map(|(l, _)| l.len()).max().unwrap_or(0);
    rows.iter()
        .map(|(label, value)| format!("{label:<width$}  {value}\n"))
        .collect()
}

fn round2(value: f64) -> f64 {
    (value * 100.0).round() / 100.0
}

/// The rules as `1. recipient domains legacy.example → legacy; 2. …`.
fn rules(value: &Value) -> String {
    let Some(list) = value.as_array() else {
        return render(value);
    };
    if list.is_empty() {
        return "none".to_string();
    }
    list.iter()
        .enumerate()
        .map(|(i, rule)| {
            let Some(rule) = rule.as_object() else {
                return format!("{}. {}", i + 1, render(rule));
            };
            let matches: Vec<String> = rule
                .iter()
                .filter(|(k, v)| *k != "route" && v.as_array().is_none_or(|a| !a.is_empty()))
                .map(|(k, v)| format!("{} {}", k.replace(['-', '_'], " "), render(v)))
                .collect();
            let route = rule.get("route").map(render).unwrap_or_default();
            format!("{}. {} → {route}", i + 1, matches.join("; "))
        })
        .collect::<Vec<_>>()
        .join("; ")
}

/// Any JSON value on one line: strings bare, objects as `key value, …`.
fn render(value: &Value) -> String {
    match value {
        Value::Null => "–".to_string(),
        Value::String(s) => s.clone(),
        Value::Array(items) => items.iter().map(render).collect::<Vec<_>>().join(", "),
        // A `state` (the guard's) says the most: it comes first.
        Value::Object(fields) => fields
            .get_key_value("state")
            .into_iter()
            .chain(fields.iter().filter(|(k, _)| *k != "state"))
            .map(|(k, v)| format!("{} {}", k.replace('_', " "), render(v)))
            .collect::<Vec<_>>()
            .join(", "),
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentages_are_read_or_refused_clearly() {
        assert_eq!(parse_percent("50").ok(), Some(50.0));
        assert_eq!(parse_percent("12.5").ok(), Some(12.5));
        assert_eq!(parse_percent("0.01").ok(), Some(0.01));
        assert_eq!(parse_percent("100").ok(), Some(100.0));
        assert_eq!(parse_percent("25%").ok(), Some(25.0));
        let too_precise = parse_percent("12.345").unwrap_err().to_string();
        assert!(
            too_precise.contains("more than two decimals"),
            "{too_precise}"
        );
        let nan = parse_percent("NaN").unwrap_err().to_string();
        assert!(nan.contains("is not a number"), "{nan}");
        assert!(!nan.contains("invalid type"), "{nan}");
        let negative = parse_percent("-5").unwrap_err().to_string();
        assert!(negative.contains("negative"), "{negative}");
        let above = parse_percent("101").unwrap_err().to_string();
        assert!(above.contains("above 100"), "{above}");
        assert!(parse_percent("inf").is_err());
        assert!(
            parse_percent("ten")
                .unwrap_err()
                .to_string()
                .contains("is not a number")
        );
    }

    #[test]
    fn table_has_every_field_and_the_new_ones() {
        let status = serde_json::json!({
            "ses_percent": 10.0,
            "source": "state-file",
            "updated_at": "2026-12-01T08:00:00Z",
            "reason": "week 1",
            "legacy_route": true,
            "rules": [{"clients": [], "sender-domains": [], "recipient-domains": ["legacy.example"], "route": "legacy"}],
            "guard": {"bounces": 0, "state": "armed", "tripped_at": null},
            "store": "ssm",
            "version": 7,
            "refreshed_at": "2026-12-01T08:01:00Z",
            "later_field": "x"
        });
        let table = status_table(&status);
        let lines: Vec<&str> = table.lines().collect();
        assert!(lines[0].starts_with("percentage"), "{table}");
        assert!(lines[0].ends_with("10 % to SES, 90 % to legacy"), "{table}");
        for expected in [
            "source        state-file",
            "since         2026-12-01T08:00:00Z",
            "reason        week 1",
            "rules         1. recipient domains legacy.example → legacy",
            "guard         state armed, bounces 0, tripped at –",
            "store         ssm",
            "version       7",
            "refreshed at  2026-12-01T08:01:00Z",
            "later field   x",
        ] {
            assert!(lines.contains(&expected), "{expected:?} missing:\n{table}");
        }
        // The fields of today's relay alone: no guard or store lines.
        let plain = serde_json::json!({"ses_percent": 100.0, "source": "config", "updated_at": null, "reason": null, "rules": []});
        let table = status_table(&plain);
        assert!(
            table.contains("since       never changed at runtime"),
            "{table}"
        );
        assert!(table.contains("rules       none"), "{table}");
        assert!(
            !table.contains("guard") && !table.contains("store"),
            "{table}"
        );
    }
}

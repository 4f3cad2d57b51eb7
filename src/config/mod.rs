//! Configuration: typed sections, loading (TOML file + `SES_RELAY__SECTION__KEY`
//! environment overrides) and validation that reports every problem with its key.
//!
//! `load_*` only parses; [`Config::validate`] checks meaning (networks, files,
//! limits). `ses-relay check-config` runs exactly these two steps.

mod check;
mod date;
mod guard;
mod sections;
mod units;
mod validate;
mod warnings;

use std::path::Path;

use serde::{Deserialize, Serialize};

pub use date::KeyDate;
pub use guard::{FeedbackConfig, GuardConfig};
pub use sections::*;
pub use units::{ByteSize, HumanDuration, numeric_keys};
pub use validate::is_loopback;
pub(crate) use validate::{is_domain, is_label};

/// The dev config compiled into the binary (`ses-relay run --dev`): loopback, demo key, outbox.
pub const EMBEDDED_DEV_CONFIG: &str = include_str!("../../etc/ses-relay.dev.toml");

/// Prefix of environment overrides: `SES_RELAY__SMTP__MAX_RECIPIENTS=20`.
pub const ENV_PREFIX: &str = "SES_RELAY__";

/// SES v2 accepts at most 50 recipients per message.
pub const SES_MAX_RECIPIENTS: usize = 50;

/// SES v2 accepts messages up to 40 MiB (raw, after encoding).
pub const SES_MAX_MESSAGE_SIZE: u64 = 40 << 20;

/// The whole configuration file.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case", default)]
pub struct Config {
    /// SMTP ingress: listeners, client admission and limits.
    pub smtp: SmtpConfig,
    /// DKIM signing keys and policy.
    pub dkim: DkimConfig,
    /// The SES route: API client or dry-run outbox.
    pub ses: SesConfig,
    /// Log format and privacy.
    pub log: LogConfig,
    /// The legacy relay; absent = SES is the only route.
    pub legacy: Option<LegacyConfig>,
    /// The split between the routes.
    pub cutover: CutoverConfig,
    /// The operators' HTTP API.
    pub admin: AdminConfig,
    /// The rollback guard's conditions.
    pub guard: GuardConfig,
    /// Where SES's events (bounces, complaints) are read from.
    pub feedback: FeedbackConfig,
    /// Loaded from the embedded dev config (`--dev`): its demo files are
    /// exempt from the file mode warning (git does not keep modes) and its
    /// demo key is never looked up in DNS (it is never published). Not a key
    /// of the file.
    #[serde(skip)]
    pub dev: bool,
}

impl Config {
    /// The configured SES share: `cutover.ses-percent`, else 0 with a legacy route and 100 without.
    pub fn configured_ses_percent(&self) -> f64 {
        self.cutover
            .ses_percent
            .unwrap_or(if self.legacy.is_some() { 0.0 } else { 100.0 })
    }
}

/// One thing wrong with a configuration, named by its key (`smtp.max-recipients`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// Dotted key path, as written in the file.
    pub key: String,
    /// What is wrong and what is expected.
    pub message: String,
}

impl std::fmt::Display for Problem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.key, self.message)
    }
}

/// Why a configuration could not be used.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file is missing, not TOML, or has unknown keys or wrong types.
    #[error("{0}")]
    Parse(String),
    /// The file parsed but some values are unusable.
    #[error("{} problem(s): {}", .0.len(), .0.iter().map(|p| p.to_string()).collect::<Vec<_>>().join("; "))]
    Invalid(Vec<Problem>),
}

impl Config {
    /// Loads a TOML file, then applies `SES_RELAY__*` environment overrides.
    pub fn load_file(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path)
            .map_err(|err| ConfigError::Parse(format!("cannot read {}: {err}", path.display())))?;
        Self::load_str(&text, std::env::vars()).map_err(|err| match err {
            // Every problem named by its key already.
            ConfigError::Invalid(problems) => ConfigError::Invalid(problems),
            ConfigError::Parse(err) => ConfigError::Parse(format!("{}: {err}", path.display())),
        })
    }

    /// The embedded dev config (`--dev`), with `SES_RELAY__*` overrides.
    pub fn load_dev(
        env: impl IntoIterator<Item = (String, String)>,
    ) -> Result<Config, ConfigError> {
        let mut config = Self::load_str(EMBEDDED_DEV_CONFIG, env)?;
        config.dev = true;
        Ok(config)
    }

    /// Parses TOML text with the given environment (injectable for tests).
    pub fn load_str(
        text: &str,
        env: impl IntoIterator<Item = (String, String)>,
    ) -> Result<Config, ConfigError> {
        let overlay = env_overrides(env)?;
        let mut tree = toml::from_str::<toml::Table>(text)
            .map_err(|err| ConfigError::Parse(err.to_string().trim_end().to_string()))?;
        check::merge(&mut tree, overlay);
        check::deserialize(toml::Value::Table(tree)).map_err(ConfigError::Invalid)
    }
}

/// Turns `SES_RELAY__SMTP__MAX_RECIPIENTS=20` into a TOML overlay `[smtp]\nmax-recipients = 20`.
///
/// `_` inside a segment becomes `-`, so `MAX_RECIPIENTS` matches the
/// kebab-case key `max-recipients`. A value that is a valid TOML value (number, bool,
/// array) is taken as such; anything else is a string.
fn env_overrides(
    env: impl IntoIterator<Item = (String, String)>,
) -> Result<toml::Table, ConfigError> {
    let mut overlay = toml::Table::new();
    for (name, raw) in env {
        let Some(path) = name.strip_prefix(ENV_PREFIX) else {
            continue;
        };
        let keys: Vec<String> = path
            .split("__")
            .map(|seg| seg.to_ascii_lowercase().replace('_', "-"))
            .collect();
        if keys.iter().any(String::is_empty) {
            return Err(ConfigError::Parse(format!(
                "environment variable {name}: empty key segment"
            )));
        }
        let value = match toml::from_str::<toml::Table>(&format!("v = {raw}")) {
            Ok(mut t) => t.remove("v").unwrap_or(toml::Value::String(raw.clone())),
            Err(_) => toml::Value::String(raw.clone()),
        };
        let (last, parents) = keys.split_last().expect("split yields one segment");
        let mut table = &mut overlay;
        for key in parents {
            let entry = table
                .entry(key.clone())
                .or_insert_with(|| toml::Value::Table(toml::Table::new()));
            table = match entry {
                toml::Value::Table(t) => t,
                _ => {
                    return Err(ConfigError::Parse(format!(
                        "environment variable {name}: `{key}` is not a section"
                    )));
                }
            };
        }
        table.insert(last.clone(), value);
    }
    Ok(overlay)
}

#[cfg(test)]
mod tests;

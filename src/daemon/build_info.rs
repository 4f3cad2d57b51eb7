//! What this binary is: version, git commit and build date (set by `build.rs`),
//! for `--version`, the status page and `ses_relay_build_info`.

/// The crate version (`0.1.0`).
pub const VERSION: &str = env!("CARGO_PKG_VERSION");

/// Short git commit the binary was built from, `unknown` outside a git checkout.
pub const COMMIT: &str = env!("SES_RELAY_GIT_COMMIT");

/// Build date, `YYYY-MM-DD` (UTC, or `SOURCE_DATE_EPOCH`).
pub const BUILD_DATE: &str = env!("SES_RELAY_BUILD_DATE");

/// `0.1.0 (abc1234 2026-11-23)`: what `ses-relay --version` prints after the name.
pub const LONG_VERSION: &str = concat!(
    env!("CARGO_PKG_VERSION"),
    " (",
    env!("SES_RELAY_GIT_COMMIT"),
    " ",
    env!("SES_RELAY_BUILD_DATE"),
    ")"
);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_version_has_commit_and_date() {
        assert!(LONG_VERSION.starts_with(VERSION));
        assert!(LONG_VERSION.contains(&format!("({COMMIT} {BUILD_DATE})")));
        let date: Vec<&str> = BUILD_DATE.split('-').collect();
        assert_eq!(date.len(), 3, "{BUILD_DATE}");
        assert_eq!(date[0].len(), 4);
        assert!(COMMIT == "unknown" || COMMIT.bytes().all(|b| b.is_ascii_hexdigit()));
    }
}

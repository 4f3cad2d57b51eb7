//! Build metadata for `--version` and `ses_relay_build_info`: the short git
//! commit and the build date, as `SES_RELAY_GIT_COMMIT` and
//! `SES_RELAY_BUILD_DATE`.
//!
//! A source tarball has no `.git`: the commit is then taken from the
//! environment variable of the same name if the packager sets it, else
//! `unknown`. The date honours `SOURCE_DATE_EPOCH` (reproducible builds), else
//! it is today's date in UTC.
//!
//! It also finds the real peers the system tests need, as tests/common/peers.rs
//! does, and sets a cfg for each one present (`has_postfix`, `has_moto`,
//! `has_dnsmasq`, `has_chromium`): a system test carries
//! `#[cfg_attr(not(has_moto), ignore = "needs moto: run tests/peers/install.sh")]`,
//! so where its peer is absent libtest counts it as ignored, with the reason,
//! instead of as passed. With `SES_RELAY_REQUIRE_PEERS=1` (.ci/run) every cfg is
//! set, so no test is ignored and one whose peer is absent fails.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{SystemTime, UNIX_EPOCH};

fn git(args: &[&str]) -> Option<String> {
    let out = Command::new("git").args(args).output().ok()?;
    if !out.status.success() {
        return None;
    }
    let text = String::from_utf8(out.stdout).ok()?.trim().to_string();
    (!text.is_empty()).then_some(text)
}

/// Days since 1970-01-01 to (year, month, day), proleptic Gregorian
/// (H. Hinnant's `civil_from_days`).
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

/// The test venv with moto, dkimpy and playwright, found as tests/common/peers.rs finds it.
fn test_venv() -> PathBuf {
    if let Some(dir) = std::env::var_os("SES_RELAY_TEST_VENV") {
        return PathBuf::from(dir);
    }
    let cache = std::env::var_os("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(std::env::var_os("HOME").unwrap_or_else(|| "/root".into())).join(".cache")
        });
    cache.join("ses-relay-test-venv")
}

/// Tells cargo to run this script again when `path` appears or changes: the
/// path itself when it exists, else its nearest existing directory (never a
/// missing path, which cargo would take as changed on every build).
fn watch(path: &Path) {
    if let Some(watched) = path.ancestors().find(|p| p.exists()) {
        println!("cargo:rerun-if-changed={}", watched.display());
    }
}

/// The `has_<peer>` cfgs the system tests are ignored by.
fn peers() {
    const PEERS: [&str; 4] = ["has_postfix", "has_moto", "has_dnsmasq", "has_chromium"];
    for cfg in PEERS {
        println!("cargo::rustc-check-cfg=cfg({cfg})");
    }
    for var in [
        "SES_RELAY_REQUIRE_PEERS",
        "SES_RELAY_TEST_VENV",
        "XDG_CACHE_HOME",
        "HOME",
    ] {
        println!("cargo:rerun-if-env-changed={var}");
    }
    if std::env::var("SES_RELAY_REQUIRE_PEERS").as_deref() == Ok("1") {
        for cfg in PEERS {
            println!("cargo:rustc-cfg={cfg}");
        }
        return;
    }
    let postfix = Path::new("/usr/sbin/postfix");
    let moto = test_venv().join("bin/moto_server");
    let dnsmasq = Path::new("/usr/sbin/dnsmasq");
    // Debian's package; fixed paths rather than PATH, which differs from shell
    // to shell and would rerun this script (and rebuild the crate) each time.
    let chromium = Path::new("/usr/bin/chromium");
    // The browser test drives chromium with playwright from the venv.
    let playwright = test_venv().join("bin/playwright");
    for path in [postfix, &moto, dnsmasq, chromium, &playwright] {
        watch(path);
    }
    // A private Postfix instance needs root, as tests/common/peers.rs says.
    let root = Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|out| String::from_utf8_lossy(&out.stdout).trim() == "0");
    for (cfg, present) in [
        ("has_postfix", postfix.exists() && root),
        ("has_moto", moto.exists()),
        ("has_dnsmasq", dnsmasq.exists()),
        ("has_chromium", chromium.exists() && playwright.exists()),
    ] {
        if present {
            println!("cargo:rustc-cfg={cfg}");
        }
    }
}

fn main() {
    peers();
    println!("cargo:rerun-if-env-changed=SES_RELAY_GIT_COMMIT");
    println!("cargo:rerun-if-env-changed=SOURCE_DATE_EPOCH");
    println!("cargo:rerun-if-changed=build.rs");
    // Rebuild the metadata when HEAD moves (a commit, a checkout) and when the
    // sources change; in a worktree `.git` is a file, so ask git where it is.
    println!("cargo:rerun-if-changed=src");
    println!("cargo:rerun-if-changed=Cargo.toml");
    if let Some(dir) = git(&["rev-parse", "--git-dir"]) {
        println!("cargo:rerun-if-changed={dir}/HEAD");
    }
    if let Some(dir) = git(&["rev-parse", "--git-common-dir"]) {
        println!("cargo:rerun-if-changed={dir}/refs/heads");
        println!("cargo:rerun-if-changed={dir}/packed-refs");
    }

    let commit = std::env::var("SES_RELAY_GIT_COMMIT")
        .ok()
        .filter(|c| !c.is_empty())
        .or_else(|| git(&["rev-parse", "--short=7", "HEAD"]))
        .unwrap_or_else(|| "unknown".to_string());
    let epoch = std::env::var("SOURCE_DATE_EPOCH")
        .ok()
        .and_then(|s| s.trim().parse::<i64>().ok())
        .unwrap_or_else(|| {
            SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map_or(0, |d| d.as_secs() as i64)
        });
    let (year, month, day) = civil_from_days(epoch.div_euclid(86_400));
    println!("cargo:rustc-env=SES_RELAY_GIT_COMMIT={commit}");
    println!("cargo:rustc-env=SES_RELAY_BUILD_DATE={year:04}-{month:02}-{day:02}");
}

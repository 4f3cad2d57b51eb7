//! Warnings: what works but should not be so, reported by `check-config`
//! and logged at start (errors are `validate`'s).

use std::path::Path;

use super::{Config, CutoverStore, Problem};

impl Config {
    /// Things that work but should not be so: private keys readable by other users
    /// (except the demo files of the embedded dev config), a shared cutover
    /// without a local cache.
    pub fn warnings(&self) -> Vec<Problem> {
        let mut keys: Vec<(String, &Path)> = self
            .dkim
            .keys
            .iter()
            .enumerate()
            .map(|(i, k)| {
                (
                    format!("dkim.keys[{i}].private-key"),
                    k.private_key.as_path(),
                )
            })
            .collect();
        if let Some(tls) = &self.smtp.tls {
            keys.push(("smtp.tls.key".into(), tls.key.as_path()));
        }
        if !self.admin.token_file.as_os_str().is_empty() {
            keys.push(("admin.token-file".into(), self.admin.token_file.as_path()));
        }
        if !self.admin.read_token_file.as_os_str().is_empty() {
            keys.push((
                "admin.read-token-file".into(),
                self.admin.read_token_file.as_path(),
            ));
        }
        if let Some(legacy) = self
            .legacy
            .as_ref()
            .filter(|l| !l.auth_password_file.as_os_str().is_empty())
        {
            keys.push((
                "legacy.auth-password-file".into(),
                legacy.auth_password_file.as_path(),
            ));
        }
        let mut warnings: Vec<Problem> = keys
            .into_iter()
            // The dev config's demo files come from git, which keeps no modes.
            .filter(|(_, path)| !(self.dev && path.starts_with("etc/dev")))
            .filter(|(_, path)| readable_by_others(path))
            .map(|(key, path)| Problem {
                key,
                message: format!("{} is readable by other users (chmod 600)", path.display()),
            })
            .collect();
        if self.dkim.dns_check_interval.0.is_zero() {
            let mut domains: Vec<String> = Vec::new();
            for key in &self.dkim.keys {
                let domain = key.domain.to_ascii_lowercase();
                if self
                    .dkim
                    .keys
                    .iter()
                    .filter(|k| k.domain.eq_ignore_ascii_case(&domain))
                    .count()
                    > 1
                    && !domains.contains(&domain)
                {
                    domains.push(domain);
                }
            }
            for domain in domains {
                warnings.push(Problem {
                    key: "dkim.dns-check-interval".into(),
                    message: format!(
                        "0 (no DNS check): {domain} has several keys and only its first one signs"
                    ),
                });
            }
        }
        if self.cutover.store == CutoverStore::Ssm && self.cutover.state_file.as_os_str().is_empty()
        {
            warnings.push(Problem {
                key: "cutover.state-file".into(),
                message: "empty with store = \"ssm\": no local cache, a start while SSM is down \
                          falls back to cutover.ses-percent"
                    .into(),
            });
        }
        warnings
    }
}

#[cfg(unix)]
fn readable_by_others(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path).is_ok_and(|m| m.permissions().mode() & 0o004 != 0)
}

#[cfg(not(unix))]
fn readable_by_others(_path: &Path) -> bool {
    false
}

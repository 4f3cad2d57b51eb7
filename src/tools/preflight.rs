//! `ses-relay preflight`: the checks the migration runbooks do by hand before
//! each cutover step, each reported as PASS, WARN or FAIL with its reason.

use std::fmt;
use std::time::Duration;

use aws_sdk_sesv2::config::SharedCredentialsProvider;
use aws_sdk_sesv2::error::ProvideErrorMetadata;

use crate::config::{Config, LegacyMode, SesMode};
use crate::message::forward::ses::SesCode;
use crate::tools::dns::TxtResolver;

mod dkim;

/// How a check came out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Level {
    /// Fine.
    Pass,
    /// Works, but look at it.
    Warn,
    /// Do not go ahead.
    Fail,
}

/// One line of the report.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finding {
    /// PASS, WARN or FAIL.
    pub level: Level,
    /// What was checked.
    pub check: String,
    /// Why it came out so.
    pub detail: String,
}

/// Longest report line: one sentence an operator reads at a glance.
pub const MAX_LINE: usize = 199;

impl fmt::Display for Finding {
    /// `LEVEL  check: detail`, one line of at most [`MAX_LINE`] characters.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let level = match self.level {
            Level::Pass => "PASS",
            Level::Warn => "WARN",
            Level::Fail => "FAIL",
        };
        let line = format!("{level}  {}: {}", self.check, self.detail);
        f.write_str(&crate::tools::aws_summary::shorten(&line, MAX_LINE))
    }
}

fn finding(level: Level, check: impl Into<String>, detail: impl Into<String>) -> Finding {
    Finding {
        level,
        check: check.into(),
        detail: detail.into(),
    }
}

/// Runs every check.
pub async fn run(
    config: &Config,
    resolver: &dyn TxtResolver,
    credentials: Option<SharedCredentialsProvider>,
) -> Vec<Finding> {
    let mut out = Vec::new();
    match config.validate() {
        Ok(()) => out.push(finding(Level::Pass, "config", "valid")),
        Err(crate::config::ConfigError::Invalid(problems)) => {
            for problem in problems {
                out.push(finding(
                    Level::Fail,
                    format!("config {}", problem.key),
                    problem.message,
                ));
            }
        }
        Err(err) => out.push(finding(Level::Fail, "config", err.to_string())),
    }
    for warning in config.warnings() {
        out.push(finding(
            Level::Warn,
            format!("config {}", warning.key),
            warning.message,
        ));
    }
    dkim::checks(config, resolver, &mut out).await;
    match config.ses.mode {
        SesMode::Outbox => out.push(finding(
            Level::Warn,
            "ses",
            "mode = outbox (dry run): SES checks skipped",
        )),
        SesMode::Api => ses_checks(config, credentials.clone(), &mut out).await,
    }
    if config.cutover.store == crate::config::CutoverStore::Ssm {
        out.push(ssm_check(config, credentials.clone()).await);
    }
    guard_checks(config, credentials, &mut out).await;
    if let Some(legacy) = &config.legacy {
        if legacy.mode == LegacyMode::Smtp {
            out.push(
                legacy_check(
                    &legacy.relay,
                    &config.smtp.hostname,
                    legacy.connect_timeout.0,
                )
                .await,
            );
        } else {
            out.push(finding(
                Level::Warn,
                "legacy",
                "mode = outbox (dry run): relay not checked",
            ));
        }
    }
    out
}

async fn ses_checks(
    config: &Config,
    credentials: Option<SharedCredentialsProvider>,
    out: &mut Vec<Finding>,
) {
    let client = crate::message::forward::ses::client(&config.ses, credentials).await;
    use crate::tools::aws_summary::summarize;
    match client.get_account().send().await {
        Ok(account) => {
            out.push(if account.sending_enabled {
                finding(Level::Pass, "ses account sending", "enabled")
            } else {
                finding(
                    Level::Fail,
                    "ses account sending",
                    "disabled (paused or suspended)",
                )
            });
            out.push(if account.production_access_enabled {
                finding(Level::Pass, "ses account production access", "granted")
            } else {
                finding(
                    Level::Fail,
                    "ses account production access",
                    "sandbox: only verified recipients",
                )
            });
            if let Some(quota) = account.send_quota {
                let detail = format!(
                    "max send rate {}/s, 24-hour quota {}, sent in the last 24 hours {}",
                    quota.max_send_rate, quota.max24_hour_send, quota.sent_last24_hours
                );
                let ours = config.ses.max_send_rate;
                if ours > quota.max_send_rate {
                    out.push(finding(
                        Level::Warn,
                        "ses quota",
                        format!("{detail}; ses.max-send-rate {ours}/s exceeds SES's rate: expect throttling"),
                    ));
                } else {
                    out.push(finding(Level::Pass, "ses quota", detail));
                }
            }
        }
        Err(err) => {
            tracing::debug!(error = %aws_sdk_sesv2::error::DisplayErrorContext(&err), "GetAccount");
            out.push(finding(
                Level::Fail,
                "ses account",
                summarize("ses:GetAccount", &err),
            ));
        }
    }
    for domain in &dkim::signing_domains(config) {
        let check = format!("ses identity {domain}");
        match client
            .get_email_identity()
            .email_identity(domain)
            .send()
            .await
        {
            Ok(identity) => {
                if identity.verified_for_sending_status {
                    out.push(finding(Level::Pass, &check, "verified for sending"));
                } else {
                    out.push(finding(
                        Level::Fail,
                        &check,
                        "identity not verified for sending (its DNS records are not confirmed yet)",
                    ));
                }
                let (status, origin) = identity
                    .dkim_attributes
                    .as_ref()
                    .map(|d| {
                        (
                            d.status
                                .as_ref()
                                .map_or("none".to_string(), |s| s.as_str().to_string()),
                            d.signing_attributes_origin
                                .as_ref()
                                .map_or("none".to_string(), |o| o.as_str().to_string()),
                        )
                    })
                    .unwrap_or(("none".into(), "none".into()));
                let level = if status == "SUCCESS" && origin.starts_with("EXTERNAL") {
                    Level::Pass
                } else {
                    Level::Warn
                };
                out.push(finding(
                    level,
                    format!("{check} dkim"),
                    format!("status {status}, signing origin {origin} (BYODKIM shows EXTERNAL)"),
                ));
            }
            Err(err) if err.code().map(SesCode::of) == Some(SesCode::NotFound) => {
                out.push(finding(
                    Level::Fail,
                    check,
                    "identity not verified: not an SES identity in this account and region",
                ))
            }
            Err(err) => out.push(finding(
                Level::Fail,
                check,
                summarize("ses:GetEmailIdentity", &err),
            )),
        }
    }
    let name = &config.ses.configuration_set;
    let check = format!("ses configuration set {name}");
    let mut pages = client.list_configuration_sets().into_paginator().send();
    let mut found = Ok(false);
    while let Some(page) = pages.next().await {
        match page {
            Ok(page) => {
                if page.configuration_sets().iter().any(|set| set == name) {
                    found = Ok(true);
                    break;
                }
            }
            Err(err) => {
                found = Err(summarize("ses:ListConfigurationSets", &err));
                break;
            }
        }
    }
    out.push(match found {
        Ok(true) => finding(Level::Pass, check, "exists"),
        Ok(false) => finding(
            Level::Fail,
            check,
            "does not exist in this account and region",
        ),
        Err(detail) => finding(Level::Fail, check, detail),
    });
}

/// The rollback guard: whether it can move traffic, and whether its SES event queue answers.
async fn guard_checks(
    config: &Config,
    credentials: Option<SharedCredentialsProvider>,
    out: &mut Vec<Finding>,
) {
    if config.guard.enabled {
        if config.legacy.is_none() {
            out.push(finding(
                Level::Warn,
                "guard",
                "no [legacy] route: the rollback guard can only alert, not move traffic",
            ));
        } else {
            out.push(finding(
                Level::Pass,
                "guard",
                format!(
                    "armed: a trip sets the SES share to {} %",
                    config.guard.fallback_percent
                ),
            ));
        }
        if config.feedback.sqs_queue_url.is_empty() {
            out.push(finding(
                Level::Warn,
                "guard feedback",
                "feedback.sqs-queue-url not set: bounce and complaint ratios are not judged",
            ));
        }
    }
    let url = &config.feedback.sqs_queue_url;
    if url.is_empty() {
        return;
    }
    let client = crate::control::feedback::client(config, credentials).await;
    // The queue's name, not its URL: the line must leave room for the cause.
    let name = url.rsplit('/').find(|s| !s.is_empty()).unwrap_or(url);
    let check = format!("feedback queue {name}");
    out.push(
        match crate::control::feedback::check_queue(&client, url).await {
            Ok(waiting) => finding(
                Level::Pass,
                check,
                format!("GetQueueAttributes answers ({waiting} messages waiting)"),
            ),
            Err(reason) => finding(
                Level::Fail,
                check,
                format!(
                    "{reason} (needs sqs:GetQueueAttributes, sqs:ReceiveMessage, sqs:DeleteMessage)"
                ),
            ),
        },
    );
}

/// `ssm:GetParameter` on the shared cutover parameter: allowed, and a value
/// the relays can use (absent is fine: the first relay creates it).
async fn ssm_check(config: &Config, credentials: Option<SharedCredentialsProvider>) -> Finding {
    let cutover = &config.cutover;
    let check = format!("ssm parameter {}", cutover.ssm_parameter);
    let store = crate::control::cutover::SsmStore::new(
        &cutover.ssm_parameter,
        &config.ses.region,
        &cutover.endpoint_url,
        credentials,
    )
    .await;
    match store.get().await {
        Ok(Some((value, version))) => finding(
            Level::Pass,
            check,
            format!(
                "GetParameter allowed: version {version}, ses_percent {} ({} by {}, {})",
                value.ses_percent, value.source, value.updated_by, value.updated_at
            ),
        ),
        Ok(None) => finding(
            Level::Warn,
            check,
            "GetParameter allowed, parameter absent: the first relay creates it from cutover.ses-percent (needs ssm:PutParameter)",
        ),
        Err(err) => finding(Level::Fail, check, err.to_string()),
    }
}

/// Why the legacy relay did not answer an EHLO.
#[derive(Debug, thiserror::Error)]
enum LegacyProbeError {
    /// No TCP connection.
    #[error("connect: {0}")]
    Connect(std::io::Error),
    /// The greeting could not be read.
    #[error("greeting: {0}")]
    Greeting(mail_send::Error),
    /// A greeting other than 220.
    #[error("greeting {code} {message}")]
    Refused {
        /// Its code.
        code: u16,
        /// Its text.
        message: String,
    },
    /// EHLO failed.
    #[error("EHLO: {0}")]
    Ehlo(mail_send::Error),
}

async fn legacy_check(relay: &str, helo: &str, timeout: Duration) -> Finding {
    let check = format!("legacy relay {relay}");
    let attempt = async {
        let stream = tokio::net::TcpStream::connect(relay)
            .await
            .map_err(LegacyProbeError::Connect)?;
        let mut client = mail_send::SmtpClient { stream, timeout };
        let greeting = client.read().await.map_err(LegacyProbeError::Greeting)?;
        if greeting.code != 220 {
            return Err(LegacyProbeError::Refused {
                code: greeting.code,
                message: greeting.message,
            });
        }
        let ehlo = client.ehlo(helo).await.map_err(LegacyProbeError::Ehlo)?;
        let _ = client.cmd(b"QUIT\r\n").await;
        Ok(format!("answers EHLO as {}", ehlo.hostname))
    };
    match tokio::time::timeout(timeout, attempt).await {
        Ok(Ok(detail)) => finding(Level::Pass, check, detail),
        Ok(Err(reason)) => finding(Level::Fail, check, reason.to_string()),
        Err(_) => finding(
            Level::Fail,
            check,
            format!("no answer within {}s", timeout.as_secs()),
        ),
    }
}

//! Dry-run delivery: each message is written to a directory instead of being
//! sent, as `<id>.eml` (the exact bytes SES would have received) and
//! `<id>.json` (the envelope). Files are written atomically (temporary name,
//! fsync, rename, fsync of the directory), so a reader never sees half a
//! message and a 250 is only given for a message that is on disk.

use std::path::{Path, PathBuf};

use serde::Serialize;

use super::{Accepted, BoxFuture, Deliver, Local, UpstreamError};
use crate::files;
use crate::message::envelope::{Envelope, MessageTag};

/// Writes messages to `dir`.
#[derive(Debug, Clone)]
pub struct Outbox {
    dir: PathBuf,
    /// The SES configuration set SES would have applied; None on the legacy route.
    configuration_set: Option<String>,
}

/// The `<id>.json` beside each message.
#[derive(Debug, Serialize)]
struct EnvelopeFile<'a> {
    id: &'a str,
    route: &'a str,
    mail_from: &'a str,
    rcpt_to: &'a [String],
    #[serde(skip_serializing_if = "Option::is_none")]
    configuration_set: Option<&'a str>,
    client: String,
    helo: &'a str,
    tls: bool,
    size: usize,
    received_at: String,
    /// The `EmailTags` SES would have received.
    #[serde(skip_serializing_if = "<[_]>::is_empty")]
    email_tags: &'a [MessageTag],
}

impl Outbox {
    /// An outbox in `dir`, created if missing; `configuration_set` is written
    /// into each `.json` (the SES route's; None for the legacy route).
    pub fn new(dir: &Path, configuration_set: Option<&str>) -> std::io::Result<Outbox> {
        std::fs::create_dir_all(dir)?;
        Ok(Outbox {
            dir: dir.to_path_buf(),
            configuration_set: configuration_set.map(str::to_string),
        })
    }

    fn write(&self, envelope: &Envelope, message: &[u8]) -> std::io::Result<()> {
        let now = mail_parser::DateTime::from_timestamp(
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_secs() as i64)
                .unwrap_or(0),
        );
        let meta = EnvelopeFile {
            id: &envelope.id,
            route: envelope.route.as_str(),
            mail_from: &envelope.mail.address,
            rcpt_to: &envelope.rcpt_to,
            configuration_set: self.configuration_set.as_deref(),
            client: envelope.client.ip().to_string(),
            helo: &envelope.helo,
            tls: envelope.tls,
            size: message.len(),
            received_at: now.to_rfc3339(),
            email_tags: &envelope.tags,
        };
        let json = serde_json::to_vec_pretty(&meta).map_err(std::io::Error::other)?;
        // The message first: a .json present means its .eml is complete.
        files::write_atomically(&self.dir, &format!("{}.eml", envelope.id), message)?;
        files::write_atomically(&self.dir, &format!("{}.json", envelope.id), &json)?;
        files::sync_dir(&self.dir)
    }
}

impl Deliver for Outbox {
    fn deliver<'a>(
        &'a self,
        envelope: &'a Envelope,
        message: Vec<u8>,
    ) -> BoxFuture<'a, Result<Accepted, UpstreamError>> {
        Box::pin(async move {
            let outbox = self.clone();
            let envelope_owned = envelope.clone();
            let written =
                tokio::task::spawn_blocking(move || outbox.write(&envelope_owned, &message))
                    .await
                    .map_err(|err| UpstreamError::local(Local::Outbox).caused_by(err))?;
            match written {
                Ok(()) => Ok(Accepted::queued(envelope.id.clone())),
                Err(err) => Err(UpstreamError::local(Local::Outbox).caused_by(err)),
            }
        })
    }
}

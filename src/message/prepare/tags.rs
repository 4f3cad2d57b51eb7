//! SES message tags on the SES route: the client's `X-SES-MESSAGE-TAGS`
//! header is removed from the message (SES would act on it), and the tags it
//! named go into the SendEmail request's `EmailTags` instead, merged with the
//! operator's `[ses] tags` defaults. Whatever SES would refuse is dropped here,
//! with a reason for the transaction log, so one bad tag never bounces a
//! message.

use crate::message::envelope::{MAX_TAGS, MessageTag, tag_text_problem};

/// The header SES reads tags from: `X-SES-MESSAGE-TAGS: name=value, name=value`.
pub const MESSAGE_TAGS_HEADER: &str = "X-SES-MESSAGE-TAGS";

/// Longest piece of a dropped tag quoted in a warning (the client wrote it).
const QUOTE_LIMIT: usize = 64;

/// Dropped tags reported one by one; the rest are only counted. Each report
/// is a log line: a header of a million bad items must not write a million.
const MAX_REPORTED: usize = 20;

/// The tags a message leaves with, and why any of its own were dropped.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct MergedTags {
    /// Defaults first, then the message's own, each name once.
    pub tags: Vec<MessageTag>,
    /// One line per tag of the message that was dropped.
    pub dropped: Vec<String>,
}

/// Merges the defaults (which win on a clash of names) with the tags of every
/// `X-SES-MESSAGE-TAGS` field value in `values`.
pub fn merge<'a>(
    defaults: &[MessageTag],
    values: impl IntoIterator<Item = &'a [u8]>,
) -> MergedTags {
    let mut merged = MergedTags {
        tags: defaults.to_vec(),
        dropped: Vec::new(),
    };
    let mut unreported = 0usize;
    for value in values {
        // Unfolded: a folded header's line breaks are not part of any tag.
        let text: String = String::from_utf8_lossy(value)
            .chars()
            .filter(|c| *c != '\r' && *c != '\n')
            .collect();
        for item in text.split(',').map(str::trim).filter(|i| !i.is_empty()) {
            if let Err(reason) = merged.add(item, defaults) {
                if merged.dropped.len() < MAX_REPORTED {
                    merged
                        .dropped
                        .push(format!("`{}` dropped: {reason}", quote(item)));
                } else {
                    unreported += 1;
                }
            }
        }
    }
    if unreported > 0 {
        merged
            .dropped
            .push(format!("{unreported} more tags dropped, not listed"));
    }
    merged
}

/// Why one tag of the message was dropped (the text goes into the log line).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
enum Dropped {
    /// No `=`.
    #[error("not name=value")]
    NotNameValue,
    /// The name breaks SES's rules for tag text.
    #[error("the name {0}")]
    Name(&'static str),
    /// The value breaks SES's rules for tag text.
    #[error("the value {0}")]
    Value(&'static str),
    /// The operator's default wins.
    #[error("[ses] tags sets this name")]
    SetByDefault,
    /// SES refuses a name given twice.
    #[error("the name is given twice")]
    Twice,
    /// SES's limit of tags per message.
    #[error("more than {MAX_TAGS} tags")]
    TooMany,
}

impl MergedTags {
    fn add(&mut self, item: &str, defaults: &[MessageTag]) -> Result<(), Dropped> {
        let (name, value) = item.split_once('=').ok_or(Dropped::NotNameValue)?;
        let (name, value) = (name.trim(), value.trim());
        if let Some(problem) = tag_text_problem(name) {
            return Err(Dropped::Name(problem));
        }
        if let Some(problem) = tag_text_problem(value) {
            return Err(Dropped::Value(problem));
        }
        if defaults.iter().any(|t| t.name == name) {
            return Err(Dropped::SetByDefault);
        }
        if self.tags.iter().any(|t| t.name == name) {
            return Err(Dropped::Twice);
        }
        if self.tags.len() >= MAX_TAGS {
            return Err(Dropped::TooMany);
        }
        self.tags.push(MessageTag {
            name: name.to_string(),
            value: value.to_string(),
        });
        Ok(())
    }
}

fn quote(item: &str) -> String {
    match item.char_indices().nth(QUOTE_LIMIT) {
        Some((cut, _)) => format!("{}…", &item[..cut]),
        None => item.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tag(name: &str, value: &str) -> MessageTag {
        MessageTag {
            name: name.into(),
            value: value.into(),
        }
    }

    #[test]
    fn the_ses_form_is_read_and_merged_defaults_winning() {
        let defaults = [tag("service", "goo-mail")];
        let merged = merge(
            &defaults,
            [
                &b" campaign=winter-2026, service=attacker ,\r\n\tkind=news"[..],
                b"second_header=yes",
            ],
        );
        assert_eq!(
            merged.tags,
            [
                tag("service", "goo-mail"),
                tag("campaign", "winter-2026"),
                tag("kind", "news"),
                tag("second_header", "yes"),
            ]
        );
        assert_eq!(merged.dropped.len(), 1, "{:?}", merged.dropped);
        assert!(merged.dropped[0].contains("service=attacker"));
    }

    #[test]
    fn what_ses_would_refuse_is_dropped_with_a_reason() {
        let long = format!("n={}", "v".repeat(257));
        let merged = merge(
            &[],
            [
                &b"ok=1, a b=c, ses:x=y, d=e.f, noequals, e=, =f, g=\xff, h=1, h=2"[..],
                long.as_bytes(),
            ],
        );
        assert_eq!(merged.tags, [tag("ok", "1"), tag("h", "1")]);
        assert_eq!(merged.dropped.len(), 9, "{:#?}", merged.dropped);
        assert!(merged.dropped.iter().any(|d| d.contains("twice")));
        // A long value is quoted only in part.
        assert!(merged.dropped.iter().all(|d| d.chars().count() < 150));
    }

    /// Each dropped tag is a `warn!` line (src/connection/session/data.rs
    /// `end_of_data`): unbounded, one 4.8 MB message holding `a=b,` 1.2
    /// million times wrote 1,200,000 log lines (222 MB), and the Strings sat
    /// outside `smtp.max-data-memory`.
    #[test]
    fn the_report_of_dropped_tags_is_bounded() {
        let flood = "a=b,".repeat(100_000);
        let merged = merge(&[], [flood.as_bytes()]);
        assert_eq!(merged.tags.len(), 1);
        assert_eq!(merged.dropped.len(), MAX_REPORTED + 1);
        assert!(
            merged.dropped[0].contains("twice"),
            "{:?}",
            merged.dropped[0]
        );
        assert_eq!(
            merged.dropped[MAX_REPORTED],
            format!("{} more tags dropped, not listed", 99_999 - MAX_REPORTED)
        );
    }

    #[test]
    fn at_most_fifty_tags() {
        let many: String = (0..60).map(|i| format!("t{i}=v,")).collect();
        let merged = merge(&[tag("d", "x")], [many.as_bytes()]);
        assert_eq!(merged.tags.len(), MAX_TAGS);
        assert_eq!(merged.dropped.len(), 11);
    }
}

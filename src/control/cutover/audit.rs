//! The audit line of the cutover: one `audit = "cutover"` log line for every
//! change of the SES percentage in force, whichever store and path made it
//! (`PUT /cutover`, the rollback guard, a value another relay wrote to SSM).

use super::Source;

/// A change of the percentage in force, as its audit line names it.
pub(super) struct Audit<'a> {
    /// The SSM parameter's version of the new value (SSM store, once SSM has it).
    pub(super) version: Option<i64>,
    /// The percentage before.
    pub(super) from: f64,
    /// The percentage now.
    pub(super) to: f64,
    /// The reason given with the change.
    pub(super) reason: &'a str,
    /// Who made it.
    pub(super) source: Source,
    /// The relay that made it (SSM store, a value read from the parameter).
    pub(super) updated_by: Option<&'a str>,
    /// `set` (made here) or how a value from SSM arrived (SSM store).
    pub(super) how: Option<&'static str>,
    /// The change's unique id (empty: the config's value).
    pub(super) change_id: &'a str,
}

/// The one audit line every change of the percentage in force ends in,
/// whichever store and path made it; absent parts are left out of the line.
pub(super) fn audit(change: &Audit<'_>, message: &str) {
    tracing::info!(
        audit = "cutover",
        version = change.version,
        from = change.from,
        to = change.to,
        reason = change.reason,
        source = %change.source,
        updated_by = change.updated_by,
        how = change.how,
        change_id = Some(change.change_id).filter(|c| !c.is_empty()),
        "{message}"
    );
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use super::*;

    /// The JSON lines `log` writes, as the production format (`format = "json"`) has them.
    fn json_lines(log: impl FnOnce()) -> Vec<serde_json::Value> {
        let buffer = Arc::new(Mutex::new(Vec::new()));
        let sink = buffer.clone();
        let subscriber = tracing_subscriber::fmt()
            .json()
            .flatten_event(true)
            .with_writer(move || Writer(sink.clone()))
            .finish();
        tracing::subscriber::with_default(subscriber, log);
        let text = String::from_utf8(buffer.lock().unwrap().clone()).unwrap();
        text.lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    }

    struct Writer(Arc<Mutex<Vec<u8>>>);

    impl std::io::Write for Writer {
        fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(bytes);
            Ok(bytes.len())
        }

        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn the_line_names_the_change_and_leaves_out_what_is_absent() {
        let lines = json_lines(|| {
            audit(
                &Audit {
                    version: None,
                    from: 10.0,
                    to: 50.0,
                    reason: "week 2",
                    source: Source::StateFile,
                    updated_by: None,
                    how: None,
                    change_id: "",
                },
                "SES percentage changed",
            );
            audit(
                &Audit {
                    version: Some(7),
                    from: 50.0,
                    to: 5.0,
                    reason: "guard: failure ratio 0.31 > 0.05 over 5m (62 of 200)",
                    source: Source::Guard,
                    updated_by: Some("relay-b"),
                    how: Some("refresh"),
                    change_id: "19aa-0123456789abcdef",
                },
                "SES percentage changed",
            );
        });
        assert_eq!(lines.len(), 2, "{lines:?}");
        let file = lines[0].as_object().unwrap();
        assert_eq!(file["audit"], "cutover");
        assert_eq!(file["message"], "SES percentage changed");
        assert_eq!(
            (file["from"].as_f64(), file["to"].as_f64()),
            (Some(10.0), Some(50.0))
        );
        assert_eq!(file["reason"], "week 2");
        assert_eq!(file["source"], "state-file");
        for absent in ["version", "updated_by", "how", "change_id"] {
            assert!(!file.contains_key(absent), "{absent} in {file:?}");
        }
        let shared = &lines[1];
        assert_eq!(shared["version"], 7);
        assert_eq!(shared["source"], "guard");
        assert_eq!(shared["updated_by"], "relay-b");
        assert_eq!(shared["how"], "refresh");
        assert_eq!(shared["change_id"], "19aa-0123456789abcdef");
        assert_eq!(shared["to"].as_f64(), Some(5.0));
    }
}

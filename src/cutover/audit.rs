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
        "{message}"
    );
}

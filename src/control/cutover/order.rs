//! Which value wins: a value read from the shared store against the one in
//! force. Pure, so the whole table is tested here.
//!
//! - Every change carries a unique `change_id`: a value with the id in force
//!   is the value in force, whatever its version (the version is updated).
//! - Otherwise SSM's parameter version orders changes: a higher version is
//!   newer. Where the version did not go up (the parameter was deleted and
//!   re-created, and its versions restarted at 1), the time of the change
//!   (`updated_at`) orders them, so a re-created parameter is followed and an
//!   older value never replaces a newer one.
//! - A change this relay made and has not yet written (the guard's trip, in
//!   force here at once) is not undone by an older value read meanwhile.

/// What is in force, as the ordering sees it.
#[derive(Debug, Clone, Copy)]
pub(crate) struct InForce<'a> {
    /// Its change id.
    pub(crate) change_id: &'a str,
    /// The store's version of it, once the store has it (or the last version
    /// seen, for a change not yet written).
    pub(crate) version: Option<i64>,
    /// When it was made, in milliseconds since the epoch.
    pub(crate) written_at: i64,
    /// Made here and not yet in the store.
    pub(crate) pending: bool,
}

/// A value read from the store.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Seen<'a> {
    /// Its change id.
    pub(crate) change_id: &'a str,
    /// The store's version.
    pub(crate) version: i64,
    /// When it was made, in milliseconds since the epoch.
    pub(crate) written_at: i64,
}

/// What to do with a value read from the store.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Verdict {
    /// It is the value in force (record its version).
    Same,
    /// It is newer: put it in force. `recreated`: its version is not above
    /// the one in force, so the parameter was re-created.
    Apply {
        /// The version went backwards (or stayed) with another change.
        recreated: bool,
    },
    /// The value in force was made here after it and is still being written.
    KeepPending,
    /// The parameter was re-created with a value older than the one in force.
    KeepOlder,
}

/// The verdict on `seen` against `in_force`.
pub(crate) fn verdict(in_force: InForce<'_>, seen: Seen<'_>) -> Verdict {
    if seen.change_id == in_force.change_id {
        return Verdict::Same;
    }
    let newer_in_time = seen.written_at >= in_force.written_at;
    match in_force.version {
        Some(version) if seen.version <= version => {
            if in_force.pending && !newer_in_time {
                Verdict::KeepPending
            } else if newer_in_time {
                Verdict::Apply {
                    recreated: !in_force.pending,
                }
            } else {
                Verdict::KeepOlder
            }
        }
        _ if in_force.pending && !newer_in_time => Verdict::KeepPending,
        _ => Verdict::Apply { recreated: false },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const T0: i64 = 1_800_000_000_000;

    fn in_force(version: Option<i64>, written_at: i64, pending: bool) -> InForce<'static> {
        InForce {
            change_id: "in-force",
            version,
            written_at,
            pending,
        }
    }

    fn seen(change_id: &'static str, version: i64, written_at: i64) -> Seen<'static> {
        Seen {
            change_id,
            version,
            written_at,
        }
    }

    #[test]
    fn the_same_change_is_the_same_whatever_its_version() {
        for version in [1, 7, 8, 100] {
            assert_eq!(
                verdict(in_force(Some(7), T0, false), seen("in-force", version, T0)),
                Verdict::Same
            );
        }
        assert_eq!(
            verdict(in_force(Some(7), T0, true), seen("in-force", 8, T0)),
            Verdict::Same,
            "our pending write landed"
        );
    }

    #[test]
    fn a_higher_version_is_newer() {
        assert_eq!(
            verdict(in_force(Some(7), T0, false), seen("other", 8, T0 - 60_000)),
            Verdict::Apply { recreated: false },
            "the version orders, not the writer's clock"
        );
        assert_eq!(
            verdict(in_force(None, T0, false), seen("other", 1, T0 - 60_000)),
            Verdict::Apply { recreated: false },
            "nothing read from the store yet"
        );
    }

    #[test]
    fn a_recreated_parameter_is_followed_when_its_value_is_newer() {
        // Deleted and re-created: version 1 after 7, written after the value in force.
        assert_eq!(
            verdict(in_force(Some(7), T0, false), seen("other", 1, T0 + 1)),
            Verdict::Apply { recreated: true }
        );
        assert_eq!(
            verdict(in_force(Some(7), T0, false), seen("other", 7, T0 + 1)),
            Verdict::Apply { recreated: true },
            "re-created and written up to the same version"
        );
        // But an older value never replaces a newer one.
        assert_eq!(
            verdict(in_force(Some(7), T0, false), seen("other", 1, T0 - 1)),
            Verdict::KeepOlder
        );
    }

    #[test]
    fn a_change_made_here_and_not_yet_written_is_not_undone_by_an_older_one() {
        // The guard's trip applied here at version 7 (the last seen); the store still holds 7.
        assert_eq!(
            verdict(in_force(Some(7), T0, true), seen("before", 7, T0 - 5_000)),
            Verdict::KeepPending
        );
        // Another relay's change written before the trip, but landing first.
        assert_eq!(
            verdict(in_force(Some(7), T0, true), seen("before", 8, T0 - 5_000)),
            Verdict::KeepPending
        );
        assert_eq!(
            verdict(in_force(None, T0, true), seen("before", 3, T0 - 5_000)),
            Verdict::KeepPending
        );
        // An operator's change after the trip wins.
        assert_eq!(
            verdict(in_force(Some(7), T0, true), seen("operator", 8, T0 + 5_000)),
            Verdict::Apply { recreated: false }
        );
        assert_eq!(
            verdict(in_force(Some(7), T0, true), seen("operator", 7, T0 + 5_000)),
            Verdict::Apply { recreated: false }
        );
    }
}

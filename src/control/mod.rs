//! The control path: who steers the fleet and how it is watched. The SES share
//! and its store (`cutover`), the rollback guard (`guard`) and SES's events
//! for it (`feedback`), the operators' HTTP API and status page (`admin`), and
//! which DKIM key signs (`dkim_rotation`).

pub mod admin;
pub mod cutover;
pub mod dkim_rotation;
pub mod feedback;
pub mod guard;

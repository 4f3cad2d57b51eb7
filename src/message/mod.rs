//! The message path: a transaction's envelope (`envelope`), the route it takes
//! (`route`), the message made ready for that route (`prepare`, with
//! `received` reading the fleet's own trace), its delivery upstream
//! (`forward`), and the one word for how it ended (`disposition`).

pub(crate) mod disposition;
pub mod envelope;
pub mod forward;
pub mod prepare;
pub mod received;
pub mod route;

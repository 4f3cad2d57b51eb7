//! The running daemon: the wiring of `ses-relay run` (`server`, imported by
//! nobody but the `run` command), what sessions share (`state`), the tasks
//! besides serving (`background`), shutdown and systemd readiness
//! (`shutdown`, `notify`), the descriptor budget (`descriptors`) and what this
//! binary is (`build_info`).

pub(crate) mod background;
pub mod build_info;
pub mod descriptors;
pub(crate) mod notify;
pub mod server;
pub mod shutdown;
pub mod state;

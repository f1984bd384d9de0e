//! The wandb-core service as a library.
//!
//! Follow a record from the socket to the disk and the backend:
//!
//! * [`server`]: listeners, one task per connection (frames in, answers
//!   out), and the shutdown every ending goes through.
//! * [`mux`]: the runs of this service, keyed by run ID: init, attach,
//!   finish, teardown.
//! * [`stream`]: one run, handler → writer → run files: history rows and
//!   summary in `stream::handler`, the transaction log in `stream::writer`,
//!   run files in `stream::runfiles`.
//! * [`runstate`]: the run's config, summary, metrics and console, shared
//!   by the handler and the online sender.
//! * [`online`]: follows the transaction log and sends the run to the W&B
//!   backend ([`backend`]: GraphQL, file stream, uploads); [`sync`] runs it
//!   over finished logs.
//! * [`settings`]: the typed view of a run's settings.
//! * [`respond`]: how answers find their connection.
//! * [`runlog`]: each run's `debug-internal.log` (the process-wide log is
//!   the binary's: the library only emits `tracing` events).

mod backend;
#[cfg(feature = "fuzzing")]
#[doc(hidden)]
pub mod fuzzing;
mod mux;
mod online;
mod operations;
mod respond;
mod runlog;
mod runstate;
mod server;
mod settings;
mod stream;
pub mod sync;

pub use server::{Service, ServiceOptions, ShutdownReason};
pub use settings::Durability;

/// Who wrote a run's records: the `producer` of the log header and
/// `_wandb.t.core_version`, the SDK version we answer as plus our own.
pub(crate) const PRODUCER: &str = concat!("0.31.0+wandb-core-rs.", env!("CARGO_PKG_VERSION"));

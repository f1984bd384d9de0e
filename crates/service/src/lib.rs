//! The wandb-core service as a library.
//!
//! Follow a record from the socket to the disk:
//!
//! * [`server`]: listeners, one task per connection (frames in, answers
//!   out), and the shutdown every ending goes through.
//! * [`mux`]: the runs of this service, keyed by run ID: init, attach,
//!   finish, teardown.
//! * [`stream`]: one run, handler → writer → sender: history rows and
//!   summary in `stream::handler`, the transaction log in `stream::writer`,
//!   run files in `stream::sender`.
//! * [`settings`]: the typed view of a run's settings.
//! * [`respond`]: how answers find their connection.
//! * [`backend`]: the W&B backend over HTTP (GraphQL, file stream,
//!   uploads), for online runs (`stream::online`) and the public API.
//! * [`logging`] and [`runlog`]: the process-wide and per-run logs.

pub mod backend;
pub mod logging;
pub mod mux;
pub mod respond;
pub mod runlog;
pub mod server;
pub mod settings;
pub mod stream;
pub mod sync;

pub use server::{Service, ServiceOptions, ShutdownReason};

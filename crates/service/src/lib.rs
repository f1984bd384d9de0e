//! The wandb-core service as a library.
//!
//! Follow a record from the socket to the disk and the backend:
//!
//! * `server`: listeners, one task per connection (frames in, answers
//!   out), and the shutdown every ending goes through.
//! * `mux`: the runs of this service, keyed by run ID: init, attach,
//!   finish, teardown.
//! * `stream`: one run, handler → writer → run files: history rows and
//!   summary in `stream::handler`, the transaction log in `stream::writer`,
//!   run files in `stream::runfiles`.
//! * `runstate`: the run's config, summary, metrics and console, shared
//!   by the handler and the online sender.
//! * `online`: follows the transaction log and sends the run to the W&B
//!   backend (`backend`: GraphQL, file stream, uploads); [`sync`] runs it
//!   over finished logs.
//! * `settings`: the typed view of a run's settings.
//! * `respond`: how answers find their connection.
//! * [`heartbeat`]: the file beside an offline run's log that says its
//!   writer is alive, for `sync --watch`.
//! * `runlog`: each run's `debug-internal.log` (the process-wide log is
//!   the binary's: the library only emits `tracing` events).

mod backend;
#[cfg(feature = "fuzzing")]
#[doc(hidden)]
pub mod fuzzing;
pub mod heartbeat;
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

pub use server::{Connector, Incoming, LocalConnection, Service, ServiceOptions, ShutdownReason};
pub use settings::Durability;

/// The wandb SDK releases whose protocol this service speaks, as (major,
/// minor) of the oldest and newest: tested with 0.22.3, 0.26.1 and 0.31.0
/// (the wandb-core crate's tests/python_wheel.rs and sdk_dropin.rs). The
/// Python wheel's hook holds the same range
/// (python/wandb_core_rs/__init__.py).
pub const SUPPORTED_WANDB: [(u32, u32); 2] = [(0, 22), (0, 31)];

/// Whether wandb `version` is in [`SUPPORTED_WANDB`].
pub fn supports_wandb(version: &str) -> bool {
    let mut parts = version.split('.').map(|p| p.parse::<u32>());
    match (parts.next(), parts.next()) {
        (Some(Ok(major)), Some(Ok(minor))) => {
            (SUPPORTED_WANDB[0]..=SUPPORTED_WANDB[1]).contains(&(major, minor))
        }
        _ => false,
    }
}

/// [`SUPPORTED_WANDB`] in words, for messages.
pub fn supported_wandb_range() -> String {
    let [(a, b), (c, d)] = SUPPORTED_WANDB;
    format!("wandb {a}.{b}.0 to {c}.{d}.x")
}

/// Who wrote a run's records: the `producer` of the log header and
/// `_wandb.t.core_version`, the SDK version we answer as plus our own.
pub(crate) const PRODUCER: &str = concat!("0.31.0+wandb-core-rs.", env!("CARGO_PKG_VERSION"));

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_supported_wandb_range_by_minor_release() {
        for v in ["0.22.0", "0.22.3", "0.26.1", "0.31.0", "0.31.2rc1"] {
            assert!(supports_wandb(v), "{v}");
        }
        for v in ["0.21.4", "0.19.11", "0.32.0", "1.0.0", "dev", ""] {
            assert!(!supports_wandb(v), "{v}");
        }
        assert_eq!(supported_wandb_range(), "wandb 0.22.0 to 0.31.x");
    }
}

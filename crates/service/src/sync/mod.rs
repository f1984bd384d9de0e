//! Sync: sending runs that were written offline (or are still being
//! written) to the W&B backend.
//!
//! One code path for live and replayed runs: each run's transaction log is
//! read by the online sender (`online::replay`), exactly as
//! it follows the log of a live online run. This module finds the runs
//! ([`paths`]), sends several at once, keeps progress and messages for the
//! SDK's `sync_status` polls and for `wandb-core sync`'s progress bars, and
//! marks synced runs (`run-<id>.wandb.synced`) so `--skip-synced` skips
//! them. A sync that is interrupted and run again continues where the
//! backend's data ends (see `replay`).

mod discovery;
pub mod gc;
pub mod paths;
mod registry;
mod session;

pub use discovery::{Discovery, DiscoveryMode};
pub use gc::{Gc, Verdict};
pub use paths::{RunTarget, discover};
pub use registry::Registry;
pub use session::{Message, RunEntry, RunStatus, Severity, SyncOptions, SyncSession};

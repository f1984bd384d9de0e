//! Durable storage of a run.
//!
//! [`txlog`] is the run's transaction log, `run-<id>.wandb`: every record the
//! run produced, in order, framed exactly as W&B's wandb-core frames it so
//! that either implementation (and `wandb sync`) can read the other's files.
//! [`write_atomically`] replaces a file whole (run files, the port file).

mod atomic;
pub mod txlog;

pub use atomic::write_atomically;

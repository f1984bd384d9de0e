//! Durable storage of a run.
//!
//! [`txlog`] is the run's transaction log, `run-<id>.wandb`: every record the
//! run produced, in order, framed exactly as W&B's wandb-core frames it so
//! that either implementation (and `wandb sync`) can read the other's files.

pub mod txlog;

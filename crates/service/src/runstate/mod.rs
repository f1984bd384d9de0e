//! A run's state as W&B shows it: config, summary, metric definitions and
//! the console's lines. The live handler keeps it as records arrive; the
//! online sender and `sync` rebuild what they send from the log with the
//! same types, so both describe a run the same way.

pub(crate) mod config;
pub(crate) mod console;
pub(crate) mod keys;
pub(crate) mod metrics;
pub(crate) mod summary;
mod yaml;

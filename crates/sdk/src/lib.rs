//! Track machine-learning runs with [Weights & Biases](https://wandb.ai)
//! from Rust.
//!
//! ```
//! # let dir = tempfile::tempdir().unwrap();
//! use wandb::{Settings, Mode, Metric, Summary};
//!
//! let run = wandb::init(
//!     Settings::new()
//!         .project("mnist")
//!         .mode(Mode::Offline)       // or WANDB_MODE; online needs WANDB_API_KEY
//!         .dir(dir.path())           // default: the current directory
//!         .config(&serde_json::json!({"lr": 1e-3, "batch_size": 64}))?,
//! )?;
//! run.define_metric(Metric::new("val/acc").summary([Summary::Max]))?;
//! for epoch in 0..3 {
//!     let loss = 1.0 / (epoch + 1) as f64;
//!     run.log(wandb::row! {"train/loss" => loss, "epoch" => epoch})?;
//! }
//! let report = run.finish(0)?;
//! println!("written to {}", report.dir.unwrap().display());
//! # Ok::<(), wandb::Error>(())
//! ```
//!
//! # Design
//!
//! Like W&B's Python SDK, this crate does not upload anything itself: it
//! streams records to a *wandb-core service*, which writes the run's
//! transaction log (`run-<id>.wandb`) and, online, uploads it. The service
//! is found by [`Transport`]: the one in `WANDB_SERVICE` (ours or W&B's),
//! else ours running inside this process (no setup at all), or a binary
//! launched by path.
//!
//! [`Run::log`] encodes the row and puts it on a bounded queue; a
//! background thread writes to the service. It never waits for I/O: when
//! the service falls behind and the queue is full, the
//! [`QueuePolicy`] decides (wait up to a limit, or drop and count).
//! [`Run::finish`] reports what was sent, dropped or undelivered.
//!
//! * [`settings`](Settings): code, then `WANDB_*` variables, then defaults.
//! * [`Run`]: log, config, summary, define_metric, alert, save, finish.
//! * [`Value`], [`Histogram`], [`Image`]: what can be logged.
//! * [`integrations`]: candle and burn training loops.

mod connection;
mod error;
pub mod integrations;
mod media;
mod metric;
mod rowframe;
mod run;
mod rundir;
mod service;
mod settings;
mod value;

pub use error::{Error, Result};
pub use media::{Histogram, Image, MAX_BINS};
pub use metric::{Goal, Metric, Summary};
pub use run::{AlertLevel, FinishReport, LogOptions, Run, RunStats, SavePolicy, TensorboardDir};
pub use settings::{Mode, QueuePolicy, Resume, Settings, Transport};
pub use value::Value;

/// Starts a run: `settings` first, then `WANDB_*` variables, then
/// defaults. Creates the run directory, finds or starts a service and waits
/// until the run exists there (online: on the W&B backend).
///
/// ```
/// # let dir = tempfile::tempdir().unwrap();
/// let run = wandb::init(wandb::Settings::new().mode(wandb::Mode::Offline).dir(dir.path()))?;
/// run.log([("loss", 0.5)])?;
/// run.finish(0)?;
/// # Ok::<(), wandb::Error>(())
/// ```
pub fn init(settings: Settings) -> Result<Run> {
    let settings = settings.or(Settings::from_env()?).resolve()?;
    if settings.mode == Mode::Disabled {
        return Ok(Run::disabled(&settings));
    }
    Run::start(settings)
}

/// The crate's README (crates.io's page), its example compiled as a
/// doctest so that it cannot rot.
#[doc = include_str!("../README.md")]
#[cfg(doctest)]
pub struct ReadmeDoctests;

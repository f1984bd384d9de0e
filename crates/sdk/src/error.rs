//! The errors the SDK returns. Every fallible call returns [`Error`]; the
//! SDK never panics in the user's process on bad input or a dead service.

use std::path::PathBuf;

/// What went wrong.
///
/// ```
/// # let dir = tempfile::tempdir().unwrap();
/// # let run = wandb::init(wandb::Settings::new().mode(wandb::Mode::Offline).dir(dir.path()))?;
/// match run.log([("", 1.0)]) {
///     Err(wandb::Error::InvalidKey { key, reason }) => eprintln!("not logged: {key:?} {reason}"),
///     other => other?,
/// }
/// # Ok::<(), wandb::Error>(())
/// ```
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A setting (from code or a `WANDB_*` variable) has an invalid value.
    #[error("invalid setting {name}: {reason}")]
    InvalidSetting { name: &'static str, reason: String },

    /// A key that cannot be logged: empty, or one W&B sets itself (`_step`,
    /// `_runtime`).
    #[error("invalid key {key:?}: {reason}")]
    InvalidKey { key: String, reason: &'static str },

    /// A value that cannot be logged (for example a config that is not a
    /// map, or an image whose buffer does not match its size).
    #[error("invalid value for {key:?}: {reason}")]
    InvalidValue { key: String, reason: String },

    /// No service could be found, launched or started.
    #[error("cannot reach a wandb service: {0}")]
    Service(String),

    /// The connection to the service is gone (the service died or closed
    /// it). Records not yet delivered are counted in the finish report.
    #[error("the wandb service connection is closed: {0}")]
    Disconnected(String),

    /// The service answered with an error.
    #[error("the wandb service refused the request: {0}")]
    Refused(String),

    /// The queue to the service stayed full for longer than the
    /// configured [`QueuePolicy::Block`](crate::QueuePolicy::Block) timeout.
    #[error("the queue to the wandb service stayed full for {0:?}")]
    QueueFull(std::time::Duration),

    /// An answer did not come in time.
    #[error("no answer from the wandb service to {what} within {after:?}")]
    Timeout {
        what: &'static str,
        after: std::time::Duration,
    },

    /// `finish` completed, but not everything arrived: records were dropped
    /// or not delivered, or the service did not confirm the exit.
    #[error("the run finished incomplete ({reason}): {} records dropped, {} undelivered", report.stats.dropped, report.stats.undelivered)]
    Incomplete {
        reason: String,
        report: Box<crate::FinishReport>,
    },

    /// The run was already finished.
    #[error("the run is finished")]
    Finished,

    /// A file could not be read or written.
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

impl Error {
    pub(crate) fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Error::Io {
            path: path.into(),
            source,
        }
    }
}

/// A `Result` with this crate's [`Error`].
///
/// ```
/// fn train(run: &wandb::Run) -> wandb::Result<()> {
///     run.log([("loss", 0.1)])
/// }
/// # let _ = train;
/// ```
pub type Result<T, E = Error> = std::result::Result<T, E>;

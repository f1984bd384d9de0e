//! `leet inspect`: a run's log as text or JSON, or its summary.
//!
//! The wandb CLI's `wandb leet inspect` runs this; its output follows
//! W&B's `wandb-core leet inspect` for the same log, so scripts written
//! against one read the other. W&B's Go source for it is not public, so
//! its behaviour was learned by running its binary on many logs (see the
//! comparison tests in `crates/cli/tests/leet_inspect.rs`).
//!
//! * [`source`]: which log, and its records with damage reported as W&B
//!   reports it.
//! * [`record`], [`text`], [`json`]: one record decoded by reflection and
//!   printed in the text format or as a JSON line.
//! * [`stream`]: records to stdout, and `--follow`.
//! * [`summary`]: `--summary`, text or JSON (the console replayed by
//!   [`crate::runlog::Console`], as the TUI shows it).
//! * [`browse`]: the record browser on a terminal.
//! * [`gofmt`]: Go's ways of writing numbers, strings and times. Values
//!   are `wandb_proto::json`'s, read and written in W&B's inspector's
//!   dialect ([`json::decode_value`], `json::Format::GO_JSON`).

pub mod browse;
pub mod gofmt;
pub mod json;
pub mod record;
pub mod source;
pub mod stream;
pub mod summary;
pub mod text;

use std::io::{IsTerminal as _, Write as _};
use std::path::PathBuf;
use std::time::Duration;

/// What `leet inspect` was asked.
#[derive(Debug, Clone)]
pub struct Options {
    /// The wandb directory (the latest run in it, without `run_file`).
    pub wandb_dir: PathBuf,
    pub run_file: Option<PathBuf>,
    pub summary: bool,
    pub json: bool,
    pub follow: bool,
    /// With `follow`: stop after the log has been idle this long (zero:
    /// never).
    pub idle_timeout: Duration,
}

#[derive(Debug, thiserror::Error)]
pub enum InspectError {
    #[error("--summary cannot be used with --follow")]
    SummaryWithFollow,
    #[error("cannot read the wandb directory {}", dir.display())]
    WandbDir {
        dir: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(
        "no runs in {}: no run-*/run-*.wandb there (name a log with --run-file)",
        dir.display()
    )]
    NoRuns { dir: PathBuf },
    #[error("cannot open {}", path.display())]
    Open {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{} is not a .wandb transaction log: {reason}", path.display())]
    NotALog { path: PathBuf, reason: String },
    #[error("cannot read {}", path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot write to stdout")]
    Output(#[source] std::io::Error),
    #[error("the terminal failed")]
    Terminal(#[source] std::io::Error),
}

/// What W&B prints on stderr before records go to a pipe or file.
const HINT: &str = "wandb leet inspect: --summary prints the run's state, latest metrics and \
                    console tail; --json prints one record per line; --follow keeps printing \
                    new records.";

pub fn run(opts: &Options) -> Result<(), InspectError> {
    if opts.summary && opts.follow {
        return Err(InspectError::SummaryWithFollow);
    }
    let log = source::resolve(&opts.wandb_dir, opts.run_file.as_deref())?;
    if opts.summary {
        return summary::print(&log, opts.json);
    }
    if !opts.json && !opts.follow && std::io::stdout().is_terminal() {
        return browse::run(&log);
    }
    let records = source::Records::open(&log)?;
    if !opts.json {
        eprintln!("{HINT}");
    }
    let follow = opts.follow.then_some(opts.idle_timeout);
    stream::print(records, &log, opts.json, follow)
}

/// Writes all of `bytes` to stdout; a closed pipe (`… | head`) is not an
/// error.
fn write_stdout(bytes: &[u8]) -> Result<(), InspectError> {
    let mut out = std::io::stdout().lock();
    match out.write_all(bytes).and_then(|()| out.flush()) {
        Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => Err(InspectError::Output(e)),
        _ => Ok(()),
    }
}

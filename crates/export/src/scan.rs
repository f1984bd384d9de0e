//! The first pass over a log: its history's columns, and who the run is.
//!
//! One read gives both: the columns and their types (into a [`Columns`]
//! shared by every run of the export) and the run's identity, state,
//! summary and config, folded by `wandb-leet`'s [`RunInfo`] as its reader
//! folds them. Reading them here rather than with
//! `wandb_leet::runlog::RunLog` saves a third pass over
//! the log, and the chart series that reader builds, which an export does
//! not need. The pass also fixes how many records the second pass reads,
//! so a log still being written exports as it was at the first pass.

use std::fs::File;
use std::path::{Path, PathBuf};

use prost::Message as _;
use wandb_leet::runlog::RunInfo;
use wandb_proto::pb;
use wandb_proto::wire;
use wandb_store::txlog::{LogReader, ReadError};

use crate::columns::Columns;
use crate::history;

/// How reading a log ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum End {
    /// At the end of the last record.
    Clean,
    /// Inside a record: the run crashed while writing it, or is still
    /// being written. Everything before it is exported.
    Torn(String),
    /// At a damaged chunk (or an I/O error): everything before it is
    /// exported, nothing after.
    Damaged(String),
}

/// What the first pass learned of one run.
#[derive(Debug, Clone)]
pub struct RunScan {
    pub log: PathBuf,
    /// Who the run is, its state, config and summary (`wandb-leet`'s
    /// fold; `RunScan` derefs to it).
    pub info: RunInfo,
    /// Records read, which the second pass reads again.
    pub records: u64,
    /// History rows among them.
    pub rows: u64,
    pub end: End,
}

impl std::ops::Deref for RunScan {
    type Target = RunInfo;

    fn deref(&self) -> &RunInfo {
        &self.info
    }
}

impl RunScan {
    fn new(log: &Path) -> Self {
        Self {
            log: log.to_path_buf(),
            info: RunInfo::default(),
            records: 0,
            rows: 0,
            end: End::Clean,
        }
    }

    /// `finished` (exit code 0), `failed` (another), or `running` (no exit
    /// record: still running, or the process died), as `wandb-leet` says.
    pub fn state(&self) -> &'static str {
        self.info.state.name()
    }

    /// The exit record's code; `None` without one (crashed, or running).
    pub fn exit_code(&self) -> Option<i32> {
        self.info.state.exit_code()
    }

    fn apply(&mut self, bytes: &[u8]) {
        let Ok(scan) = wire::scan_record(bytes) else {
            return;
        };
        // Only these are decoded: stats, console lines and the rest are
        // skipped without it.
        if !matches!(
            scan.record_type_name(),
            Some("run" | "summary" | "config" | "exit")
        ) {
            return;
        }
        let Ok(record) = pb::Record::decode(bytes) else {
            return;
        };
        if let Some(record) = record.record_type {
            self.info.apply(record);
        }
    }
}

/// The run ID a log's file name gives (`run-<id>.wandb`), else its stem.
pub fn id_from_file_name(log: &Path) -> String {
    let name = log.file_name().and_then(|n| n.to_str()).unwrap_or("run");
    name.strip_prefix("run-")
        .and_then(|n| n.strip_suffix(".wandb"))
        .filter(|id| !id.is_empty())
        .map(str::to_string)
        .unwrap_or_else(|| {
            log.file_stem()
                .and_then(|s| s.to_str())
                .unwrap_or("run")
                .to_string()
        })
}

/// Reads the whole log at `log`, noting every history column in
/// `columns`. An error only when the log cannot be opened (missing, not
/// a log); damage later on ends the scan and is told in [`RunScan::end`].
pub fn scan(log: &Path, columns: &mut Columns) -> Result<RunScan, ReadError> {
    let mut reader: LogReader<File> = LogReader::open(log)?;
    let mut run = RunScan::new(log);
    let mut buf = Vec::new();
    loop {
        match reader.next_into(&mut buf) {
            Ok(Some(_)) => {}
            Ok(None) => break,
            Err(e @ ReadError::Truncated { .. }) => {
                run.end = End::Torn(e.to_string());
                break;
            }
            Err(e) => {
                run.end = End::Damaged(error_text(&e));
                break;
            }
        }
        run.records += 1;
        let is_row = history::read_row(&buf, |key, raw| columns.observe(key, raw.kind()));
        if is_row {
            run.rows += 1;
        } else {
            run.apply(&buf);
        }
    }
    if run.id.is_empty() {
        run.info.id = id_from_file_name(log);
    }
    Ok(run)
}

/// An error with its causes, `: `-separated.
pub fn error_text(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}

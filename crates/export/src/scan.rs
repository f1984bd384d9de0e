//! The first pass over a log: its history's columns, and who the run is.
//!
//! One read gives both: the columns and their types (into a [`Columns`]
//! shared by every run of the export) and the run's identity, state,
//! summary and config, kept as `wandb-leet`'s reader keeps them (a
//! [`Tree`] that records change one path at a time). Reading them here
//! rather than with `wandb_leet::runlog::RunLog` saves a third pass over
//! the log, and the chart series that reader builds, which an export does
//! not need. The pass also fixes how many records the second pass reads,
//! so a log still being written exports as it was at the first pass.

use std::fs::File;
use std::path::{Path, PathBuf};

use prost::Message as _;
use wandb_proto::json::Value;
use wandb_proto::pb::{self, record::RecordType};
use wandb_proto::tree::Tree;
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
    pub id: String,
    pub entity: String,
    pub project: String,
    pub name: String,
    pub group: String,
    pub job_type: String,
    pub notes: String,
    pub host: String,
    pub tags: Vec<String>,
    /// Seconds since the epoch.
    pub start_time: Option<f64>,
    /// The exit record's code; `None` without one (crashed, or running).
    pub exit_code: Option<i32>,
    pub config: Tree,
    pub summary: Tree,
    /// Records read, which the second pass reads again.
    pub records: u64,
    /// History rows among them.
    pub rows: u64,
    pub end: End,
}

impl RunScan {
    fn new(log: &Path) -> Self {
        Self {
            log: log.to_path_buf(),
            id: String::new(),
            entity: String::new(),
            project: String::new(),
            name: String::new(),
            group: String::new(),
            job_type: String::new(),
            notes: String::new(),
            host: String::new(),
            tags: Vec::new(),
            start_time: None,
            exit_code: None,
            config: Tree::default(),
            summary: Tree::default(),
            records: 0,
            rows: 0,
            end: End::Clean,
        }
    }

    /// `finished` (exit code 0), `failed` (another), or `running` (no exit
    /// record: still running, or the process died), as `wandb-leet` says.
    pub fn state(&self) -> &'static str {
        match self.exit_code {
            None => "running",
            Some(0) => "finished",
            Some(_) => "failed",
        }
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
        match record.record_type {
            Some(RecordType::Run(run)) => self.apply_run(run),
            Some(RecordType::Summary(s)) => {
                for item in s.update {
                    set(
                        &mut self.summary,
                        &item.key,
                        &item.nested_key,
                        &item.value_json,
                    );
                }
                for item in s.remove {
                    self.summary.remove(&path(&item.key, &item.nested_key));
                }
            }
            Some(RecordType::Config(c)) => self.apply_config(c),
            Some(RecordType::Exit(e)) => self.exit_code = Some(e.exit_code),
            _ => {}
        }
    }

    fn apply_run(&mut self, run: pb::RunRecord) {
        let keep = |field: &mut String, new: String| {
            if !new.is_empty() {
                *field = new;
            }
        };
        keep(&mut self.id, run.run_id);
        keep(&mut self.entity, run.entity);
        keep(&mut self.project, run.project);
        keep(&mut self.name, run.display_name);
        keep(&mut self.group, run.run_group);
        keep(&mut self.job_type, run.job_type);
        keep(&mut self.notes, run.notes);
        keep(&mut self.host, run.host);
        if !run.tags.is_empty() {
            self.tags = run.tags;
        }
        if let Some(t) = &run.start_time {
            self.start_time = Some(wandb_proto::time::secs(t));
        }
        if let Some(config) = run.config {
            self.apply_config(config);
        }
        if let Some(summary) = run.summary {
            for item in summary.update {
                set(
                    &mut self.summary,
                    &item.key,
                    &item.nested_key,
                    &item.value_json,
                );
            }
        }
    }

    fn apply_config(&mut self, c: pb::ConfigRecord) {
        for item in c.update {
            set(
                &mut self.config,
                &item.key,
                &item.nested_key,
                &item.value_json,
            );
        }
        for item in c.remove {
            self.config.remove(&path(&item.key, &item.nested_key));
        }
    }
}

fn path(key: &str, nested: &[String]) -> Vec<String> {
    if nested.is_empty() {
        vec![key.to_string()]
    } else {
        nested.to_vec()
    }
}

fn set(tree: &mut Tree, key: &str, nested: &[String], value_json: &str) {
    let value = Value::parse(value_json).unwrap_or_else(|_| Value::Str(value_json.to_string()));
    tree.insert(&path(key, nested), value);
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
        run.id = id_from_file_name(log);
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

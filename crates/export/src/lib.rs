//! `wandb-core export`: runs' history, summary and config as tables that
//! pandas, polars and DuckDB read, without W&B's servers or SDK.
//!
//! A run's history is a log of rows (`run-<id>.wandb`), each with the keys
//! logged at that step; a notebook wants a table with one column per
//! metric. What is written, for one run or every run of a wandb directory:
//!
//! * the history, `<out>`: one row per history row, `_step` first (after
//!   `run_id` when the input is a wandb directory, so that
//!   `df.groupby("run_id")` works), then the metrics by name, wandb's own
//!   `_runtime` / `_timestamp` last. A metric's column is Int64 when every
//!   value is an integer, Float64 for numbers (NaN and ±inf kept), Boolean,
//!   or Utf8 for strings; lists, media (one JSON object, see [`history`])
//!   and columns of mixed types are their JSON text (field metadata
//!   `wandb.type = json`). A step where a metric was not logged is null.
//!   Nested dicts are `a.b` columns, as wandb-core stores them.
//! * the runs table, `<out stem>.runs.<ext>`: one row per run, its
//!   identity and state, `config.*` and `summary.*` flattened ([`runs`]).
//! * Parquet files also carry every run's config and summary as JSON in
//!   the schema's and the file's key-value metadata, key `wandb.runs`.
//!
//! Memory stays bounded however long the runs: the first pass
//! ([`scan`]) reads every log for the columns and their types (and the
//! runs' config and summary), the second writes the rows in batches of a
//! bounded number of cells ([`batch`]) to the format's writer
//! ([`parquet`], [`csv`], [`jsonl`]). What is held is one batch, the
//! column names and the runs' summaries and configs.
//!
//! A damaged log exports what precedes the damage; [`Report`] says which
//! run and where, and the CLI exits non-zero (see its `--help`). A log
//! that ends inside a record (a crash, or a run still being written)
//! exports everything before it; that is how such logs end, not damage.

pub mod batch;
pub mod cells;
pub mod columns;
pub mod csv;
pub mod history;
pub mod jsonl;
pub mod parquet;
pub mod runs;
pub mod scan;
pub mod value;

use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use arrow_array::RecordBatch;
use arrow_schema::{ArrowError, DataType, Field, Schema};
use wandb_store::txlog::{LogReader, ReadError};

use crate::batch::Batcher;
use crate::columns::Columns;
use crate::scan::{End, RunScan};
use crate::value::Kind;

/// Parquet key-value metadata key holding the runs as JSON.
pub const METADATA_KEY: &str = "wandb.runs";

/// Cells per batch (rows × columns): about 16 MB of numbers, whatever the
/// width of the table.
const BATCH_CELLS: usize = 1 << 21;
/// Rows per batch at most; Parquet row groups are this long too.
const BATCH_ROWS: usize = 1 << 17;

/// Why an export did not happen.
#[derive(Debug, thiserror::Error)]
pub enum ExportError {
    #[error("{}: no such file or directory", .0.display())]
    NotFound(PathBuf),
    #[error(
        "{}: no run found (give a run-<id>.wandb file, a run directory holding one, or a wandb directory of run-*/offline-run-* directories)",
        .0.display()
    )]
    NoRuns(PathBuf),
    #[error("{}: not a readable wandb transaction log", path.display())]
    NotALog {
        path: PathBuf,
        #[source]
        source: ReadError,
    },
    #[error("{}: no run's log could be read", .0.display())]
    NoReadableRuns(PathBuf),
    #[error("{}: the log changed while it was exported (damaged, or rewritten)", .0.display())]
    Changed(PathBuf),
    #[error("{} exists (--force overwrites it)", .0.display())]
    Exists(PathBuf),
    #[error("{}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("writing the output")]
    Write(#[source] std::io::Error),
    #[error("writing Parquet")]
    Parquet(#[from] ::parquet::errors::ParquetError),
    #[error("building a batch of rows")]
    Arrow(#[from] ArrowError),
    #[error("writing CSV")]
    Csv(#[from] ::csv::Error),
    #[error("writing JSON Lines")]
    Json(#[from] serde_json::Error),
}

fn io_at(path: &Path) -> impl FnOnce(std::io::Error) -> ExportError + '_ {
    move |source| ExportError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// An output format.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Parquet,
    Csv,
    Jsonl,
}

impl Format {
    pub fn extension(self) -> &'static str {
        match self {
            Format::Parquet => "parquet",
            Format::Csv => "csv",
            Format::Jsonl => "jsonl",
        }
    }

    /// The format a file name asks for by its extension.
    pub fn from_path(path: &Path) -> Option<Format> {
        match path.extension()?.to_str()?.to_ascii_lowercase().as_str() {
            "parquet" | "pq" => Some(Format::Parquet),
            "csv" => Some(Format::Csv),
            "jsonl" | "ndjson" | "json" => Some(Format::Jsonl),
            _ => None,
        }
    }
}

/// What to export, and where.
#[derive(Debug, Clone)]
pub struct Options {
    /// A `.wandb` file, a run directory, or a wandb directory (or the
    /// directory holding `wandb/`).
    pub input: PathBuf,
    /// Default: from `out`'s extension, else Parquet.
    pub format: Option<Format>,
    /// The history file. Default: `<run id>.<ext>` for one run,
    /// `history.<ext>` for a wandb directory, in the current directory.
    pub out: Option<PathBuf>,
    /// Replace existing output files.
    pub force: bool,
    /// Rows per batch (and Parquet row group); default: as many as keep a
    /// batch near 2M cells, at most 131,072.
    pub batch_rows: Option<usize>,
}

/// An export resolved: the logs, the format and the files.
#[derive(Debug, Clone)]
pub struct Plan {
    pub format: Format,
    /// The logs, oldest run first.
    pub logs: Vec<PathBuf>,
    /// Whether the input is a wandb directory (the history gets a
    /// `run_id` column).
    pub directory: bool,
    /// The history file.
    pub history: PathBuf,
    /// The runs table.
    pub runs: PathBuf,
    force: bool,
    batch_rows: Option<usize>,
}

/// How one run went.
#[derive(Debug, Clone)]
pub struct RunOutcome {
    pub log: PathBuf,
    pub id: String,
    pub rows: u64,
    pub problem: Option<Problem>,
}

/// Something the user should hear about one run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Problem {
    /// The log ends inside a record (a crash, or still being written):
    /// everything before it was exported.
    Torn(String),
    /// The log is damaged: what precedes the damage was exported.
    Damaged(String),
    /// Not a log, or unreadable: the run was left out.
    Unreadable(String),
}

/// What an export wrote.
#[derive(Debug, Clone)]
pub struct Report {
    pub history: PathBuf,
    pub runs_table: PathBuf,
    pub rows: u64,
    /// Columns of the history, `run_id` included.
    pub columns: usize,
    pub runs: Vec<RunOutcome>,
}

impl Report {
    /// Whether some run was damaged or left out: the files hold less than
    /// the logs.
    pub fn incomplete(&self) -> bool {
        self.runs.iter().any(|r| {
            matches!(
                r.problem,
                Some(Problem::Damaged(_) | Problem::Unreadable(_))
            )
        })
    }
}

/// Finds the logs and names the files; refuses (before reading anything)
/// to overwrite an existing file without `force`.
pub fn plan(opts: &Options) -> Result<Plan, ExportError> {
    let input = &opts.input;
    let meta = std::fs::metadata(input).map_err(|e| match e.kind() {
        std::io::ErrorKind::NotFound => ExportError::NotFound(input.clone()),
        _ => io_at(input)(e),
    })?;
    let (logs, directory) = if meta.is_dir() {
        find_logs(input)?
    } else {
        (vec![input.clone()], false)
    };
    let format = opts
        .format
        .or_else(|| opts.out.as_deref().and_then(Format::from_path))
        .unwrap_or(Format::Parquet);
    let history = opts.out.clone().unwrap_or_else(|| {
        let stem = if directory {
            "history".to_string()
        } else {
            scan::id_from_file_name(&logs[0])
        };
        PathBuf::from(format!("{stem}.{}", format.extension()))
    });
    let runs = sibling(&history, "runs", format);
    if !opts.force {
        for path in [&history, &runs] {
            if path.symlink_metadata().is_ok() {
                return Err(ExportError::Exists(path.clone()));
            }
        }
    }
    Ok(Plan {
        format,
        logs,
        directory,
        history,
        runs,
        force: opts.force,
        batch_rows: opts.batch_rows,
    })
}

/// `dir`'s logs: its own (a run directory), or its runs' (a wandb
/// directory, or a directory holding `wandb/`), oldest first.
fn find_logs(dir: &Path) -> Result<(Vec<PathBuf>, bool), ExportError> {
    if let Some(log) = wandb_leet::workspace::find_log(dir) {
        return Ok((vec![log], false));
    }
    for candidate in [dir.to_path_buf(), dir.join("wandb")] {
        if !candidate.is_dir() {
            continue;
        }
        let mut runs = wandb_leet::workspace::list_runs(&candidate).map_err(io_at(&candidate))?;
        if !runs.is_empty() {
            runs.reverse();
            return Ok((runs.into_iter().map(|r| r.log).collect(), true));
        }
    }
    Err(ExportError::NoRuns(dir.to_path_buf()))
}

/// `out` with `.<what>` before its extension (`h.parquet` → `h.runs.parquet`).
fn sibling(out: &Path, what: &str, format: Format) -> PathBuf {
    let ext = out
        .extension()
        .and_then(|e| e.to_str())
        .unwrap_or(format.extension());
    let stem = out
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default();
    out.with_file_name(format!("{stem}.{what}.{ext}"))
}

/// Somewhere to write until the export is whole: a hidden file beside the
/// target, renamed over it at the end (so a failed export leaves nothing
/// half-written, and an existing file is replaced whole or not at all).
struct Staged {
    target: PathBuf,
    temp: PathBuf,
    keep: bool,
}

impl Staged {
    fn create(target: &Path, force: bool) -> Result<(Self, File), ExportError> {
        if !force && target.symlink_metadata().is_ok() {
            return Err(ExportError::Exists(target.to_path_buf()));
        }
        let name = target
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let temp = target.with_file_name(format!(".{name}.partial-{}", std::process::id()));
        let file = File::create(&temp).map_err(io_at(&temp))?;
        let staged = Self {
            target: target.to_path_buf(),
            temp,
            keep: false,
        };
        Ok((staged, file))
    }

    fn commit(mut self) -> Result<(), ExportError> {
        std::fs::rename(&self.temp, &self.target).map_err(io_at(&self.target))?;
        self.keep = true;
        Ok(())
    }
}

impl Drop for Staged {
    fn drop(&mut self) {
        if !self.keep {
            let _ = std::fs::remove_file(&self.temp);
        }
    }
}

/// Where batches go, whatever the format.
pub trait Sink {
    fn write(&mut self, batch: &RecordBatch) -> Result<(), ExportError>;
    /// Writes what is buffered and the format's ending.
    fn finish(self: Box<Self>) -> Result<(), ExportError>;
}

fn sink(
    format: Format,
    file: File,
    schema: &Arc<Schema>,
    metadata: &str,
    batch_rows: usize,
) -> Result<Box<dyn Sink>, ExportError> {
    Ok(match format {
        Format::Parquet => Box::new(parquet::ParquetSink::new(
            file,
            schema.clone(),
            vec![(METADATA_KEY.to_string(), metadata.to_string())],
            batch_rows,
        )?),
        Format::Csv => Box::new(csv::CsvSink::new(file, schema)?),
        Format::Jsonl => Box::new(jsonl::JsonlSink::new(file, schema)),
    })
}

/// The schema with the runs' JSON in its metadata: Arrow readers (pyarrow's
/// `schema.metadata`, polars) find it there, Parquet-only ones in the
/// file's key-value metadata, where [`parquet::ParquetSink`] puts it too.
fn with_metadata(schema: Arc<Schema>, runs_json: &str) -> Arc<Schema> {
    let schema = Arc::unwrap_or_clone(schema);
    Arc::new(schema.with_metadata([(METADATA_KEY, runs_json)]))
}

/// Runs the export: both passes, both files.
pub fn export(plan: &Plan) -> Result<Report, ExportError> {
    // Pass 1: columns, types, and the runs.
    let mut columns = Columns::default();
    let mut scans: Vec<RunScan> = Vec::new();
    let mut outcomes = Vec::new();
    for log in &plan.logs {
        match scan::scan(log, &mut columns) {
            Ok(run) => scans.push(run),
            Err(source) if !plan.directory => {
                return Err(ExportError::NotALog {
                    path: log.clone(),
                    source,
                });
            }
            Err(e) => outcomes.push(RunOutcome {
                log: log.clone(),
                id: scan::id_from_file_name(log),
                rows: 0,
                problem: Some(Problem::Unreadable(scan::error_text(&e))),
            }),
        }
    }
    if scans.is_empty() {
        let dir = plan
            .logs
            .first()
            .and_then(|l| l.parent())
            .unwrap_or(Path::new("."));
        return Err(ExportError::NoReadableRuns(dir.to_path_buf()));
    }
    // `_step` is always there (first), even in a run without rows.
    columns.observe("_step", Some(Kind::Int));
    let mut layout = columns.layout(&["_step"], &[]);
    let leading = if plan.directory {
        if layout.position("run_id").is_some() {
            layout.rename("run_id", "run_id (logged)".into());
        }
        vec![Field::new("run_id", DataType::Utf8, false)]
    } else {
        vec![]
    };
    let metadata = runs::metadata_json(&scans);
    let schema = with_metadata(layout.schema(&leading), &metadata);
    let batch_rows = plan
        .batch_rows
        .unwrap_or_else(|| (BATCH_CELLS / schema.fields().len()).clamp(1, BATCH_ROWS))
        .max(1);

    // Pass 2: the rows, batch by batch.
    let (history_file, file) = Staged::create(&plan.history, plan.force)?;
    let mut out = sink(plan.format, file, &schema, &metadata, batch_rows)?;
    let mut batcher = Batcher::new(&layout, schema.clone(), plan.directory, batch_rows);
    let mut rows = 0u64;
    for run in &scans {
        let mut reader: LogReader<File> =
            LogReader::open(&run.log).map_err(|_| ExportError::Changed(run.log.clone()))?;
        let mut buf = Vec::new();
        for _ in 0..run.records {
            match reader.next_into(&mut buf) {
                Ok(Some(_)) => {}
                _ => return Err(ExportError::Changed(run.log.clone())),
            }
            if history::read_row(&buf, |key, raw| batcher.put(key, raw.cell())) {
                batcher.end_row(&run.id);
                rows += 1;
                if batcher.is_full() {
                    out.write(&batcher.take()?)?;
                }
            }
        }
    }
    if !batcher.is_empty() {
        out.write(&batcher.take()?)?;
    }
    out.finish()?;

    // The runs table.
    let (runs_schema, runs_batch) = runs::table(&scans)?;
    let runs_schema = with_metadata(runs_schema, &metadata);
    let runs_batch = runs_batch.with_schema(runs_schema.clone())?;
    let (runs_file, file) = Staged::create(&plan.runs, plan.force)?;
    let mut out = sink(plan.format, file, &runs_schema, &metadata, batch_rows)?;
    out.write(&runs_batch)?;
    out.finish()?;

    history_file.commit()?;
    runs_file.commit()?;

    outcomes.extend(scans.iter().map(|run| RunOutcome {
        log: run.log.clone(),
        id: run.id.clone(),
        rows: run.rows,
        problem: match &run.end {
            End::Clean => None,
            End::Torn(e) => Some(Problem::Torn(e.clone())),
            End::Damaged(e) => Some(Problem::Damaged(e.clone())),
        },
    }));
    outcomes.sort_by_key(|o| plan.logs.iter().position(|l| *l == o.log));
    Ok(Report {
        history: plan.history.clone(),
        runs_table: plan.runs.clone(),
        rows,
        columns: schema.fields().len(),
        runs: outcomes,
    })
}

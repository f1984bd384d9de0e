//! A run, read from its transaction log (`run-<id>.wandb`).
//!
//! LEET, `inspect --summary` and the chart views all need the same few
//! things from a log: who the run is, its state, config and summary, its
//! metrics as series, its system metrics and its console. [`RunLog`] reads
//! the log in steps (so a UI can draw while a big log loads, and follow a
//! log still being written: the store's reader resumes where it stopped)
//! and keeps [`RunData`], whose size is bounded however long the run is:
//! series are downsampled ([`series`]), the console keeps its newest lines.

pub mod console;
mod info;
pub mod series;

use std::fs::File;
use std::path::{Path, PathBuf};

use indexmap::IndexMap;
use prost::Message as _;
use wandb_proto::json::Value;
use wandb_proto::pb::{self, record::RecordType};
use wandb_proto::tree::Tree;
use wandb_proto::view::{HistoryView, TypedValue};
use wandb_store::txlog::{LogReader, ReadError};

pub use console::{Console, Line, Stream};
pub(crate) use info::item_path;
pub use info::{RunInfo, RunState};
pub use series::{Bucket, Series};

/// Why a log cannot be read (further).
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error("{path}: {source}")]
    Read {
        path: PathBuf,
        #[source]
        source: ReadError,
    },
}

/// What LEET knows of a run.
#[derive(Debug, Clone)]
pub struct RunData {
    /// Who the run is and where it stands (also reachable as `run.id`,
    /// `run.state`, …: `RunData` derefs to it).
    pub info: RunInfo,
    /// History rows read.
    pub rows: u64,
    /// The last row's `_step`.
    pub step: Option<i64>,
    /// Numeric metrics of the history, in first-logged order.
    pub metrics: IndexMap<String, Series>,
    /// System metrics (`stats` records), in first-seen order; x is the
    /// sample's index.
    pub system: IndexMap<String, Series>,
    pub console: Console,
    /// Records read.
    pub records: u64,
}

impl std::ops::Deref for RunData {
    type Target = RunInfo;

    fn deref(&self) -> &RunInfo {
        &self.info
    }
}

impl RunData {
    fn new() -> Self {
        Self {
            info: RunInfo::default(),
            rows: 0,
            step: None,
            metrics: IndexMap::new(),
            system: IndexMap::new(),
            console: Console::default(),
            records: 0,
        }
    }

    fn apply(&mut self, bytes: &[u8]) {
        self.records += 1;
        // Rows are nearly all of a big log: read them without decoding.
        if let Ok(Some(row)) = HistoryView::from_record(bytes) {
            self.add_row(&row);
            return;
        }
        let Ok(record) = pb::Record::decode(bytes) else {
            tracing::debug!("skipping a record that does not decode");
            return;
        };
        let Some(rest) = record.record_type.and_then(|r| self.info.apply(r)) else {
            return;
        };
        match rest {
            RecordType::History(h) => {
                // A row the borrowed view refused (a repeated field): the
                // decoded one says the same.
                let items: Vec<(String, String)> = h
                    .item
                    .into_iter()
                    .map(|i| (item_key(&i.key, &i.nested_key), i.value_json))
                    .collect();
                self.add_items(items.iter().map(|(k, v)| (k.as_str(), Number::Json(v))));
            }
            RecordType::Stats(s) => {
                let time = s.timestamp.as_ref().map(wandb_proto::time::secs);
                let sample = self.system.values().map(Series::points).max().unwrap_or(0);
                for item in s.item {
                    if let Some(y) = number(Number::Json(&item.value_json)) {
                        self.system.entry(item.key).or_default().push(
                            sample as f64,
                            time.unwrap_or(0.0),
                            y,
                        );
                    }
                }
            }
            RecordType::OutputRaw(o) => {
                let stream = Stream::of_output_type(o.output_type);
                self.console.push(stream, o.timestamp, &o.line);
            }
            RecordType::Output(o) => {
                let stream = Stream::of_output_type(o.output_type);
                self.console.push(stream, o.timestamp, &o.line);
            }
            _ => {}
        }
    }

    fn add_row(&mut self, row: &HistoryView<'_>) {
        let nested: Vec<String> = row
            .items
            .iter()
            .map(|i| {
                if i.nested_key.is_empty() {
                    String::new()
                } else {
                    i.nested_key.join(".")
                }
            })
            .collect();
        self.add_items(row.items.iter().zip(&nested).map(|(item, nested)| {
            let key = if nested.is_empty() { item.key } else { nested };
            let value = match item.typed {
                Some(TypedValue::Number(x)) => Number::Float(x),
                Some(TypedValue::Int(i)) => Number::Float(i as f64),
                Some(_) => Number::None,
                None => Number::Json(item.value_json),
            };
            (key, value)
        }));
    }

    fn add_items<'a>(&mut self, items: impl Iterator<Item = (&'a str, Number<'a>)> + Clone) {
        self.rows += 1;
        let mut step = None;
        let mut time = 0.0;
        for (key, value) in items.clone() {
            match key {
                "_step" => step = number(value).map(|s| s as i64),
                "_timestamp" => time = number(value).unwrap_or(0.0),
                _ => {}
            }
        }
        let step = step.unwrap_or(self.rows as i64 - 1);
        self.step = Some(step);
        for (key, value) in items {
            if key.starts_with('_') {
                continue;
            }
            if let Some(y) = number(value) {
                match self.metrics.get_mut(key) {
                    Some(series) => series.push(step as f64, time, y),
                    None => {
                        let mut series = Series::default();
                        series.push(step as f64, time, y);
                        self.metrics.insert(key.to_string(), series);
                    }
                }
            }
        }
    }
}

/// A history value, as read.
#[derive(Clone, Copy)]
enum Number<'a> {
    Json(&'a str),
    Float(f64),
    None,
}

/// A history value as a chart point: numbers and booleans (as 0/1).
fn number(value: Number<'_>) -> Option<f64> {
    match value {
        Number::Float(x) => Some(x),
        Number::None => None,
        Number::Json(text) => match text {
            "true" => Some(1.0),
            "false" => Some(0.0),
            // Python's json writes NaN and ±Infinity bare; Rust parses both.
            _ => text.parse::<f64>().ok(),
        },
    }
}

fn item_key(key: &str, nested: &[String]) -> String {
    if nested.is_empty() {
        key.to_string()
    } else {
        nested.join(".")
    }
}

/// How far a [`RunLog::poll`] got.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Progress {
    /// The budget ran out: more records are waiting.
    More,
    /// Everything written so far is read.
    CaughtUp,
}

/// A log being read, and what it said so far.
pub struct RunLog {
    path: PathBuf,
    reader: LogReader<File>,
    buf: Vec<u8>,
    data: RunData,
    /// Set when the log is damaged: what is before the damage stays.
    damage: Option<String>,
}

impl RunLog {
    pub fn open(path: &Path) -> Result<Self, LoadError> {
        let reader = LogReader::open(path).map_err(|source| LoadError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        Ok(Self {
            path: path.to_path_buf(),
            reader,
            buf: Vec::new(),
            data: RunData::new(),
            damage: None,
        })
    }

    /// Opens a log and reads all of it.
    pub fn read(path: &Path) -> Result<RunData, LoadError> {
        let mut log = Self::open(path)?;
        while log.poll(usize::MAX) == Progress::More {}
        Ok(log.data)
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn data(&self) -> &RunData {
        &self.data
    }

    /// Why reading stopped early, if it did.
    pub fn damage(&self) -> Option<&str> {
        self.damage.as_deref()
    }

    /// Reads up to `budget` more records. A log still being written ends
    /// in an incomplete record: that is "caught up", and the next poll
    /// continues from it.
    pub fn poll(&mut self, budget: usize) -> Progress {
        if self.damage.is_some() {
            return Progress::CaughtUp;
        }
        for _ in 0..budget {
            match self.reader.next_into(&mut self.buf) {
                Ok(Some(_)) => self.data.apply(&self.buf),
                Ok(None) | Err(ReadError::Truncated { .. }) => return Progress::CaughtUp,
                Err(e) => {
                    tracing::warn!(path = %self.path.display(), "log unreadable from here: {e}");
                    self.damage = Some(e.to_string());
                    return Progress::CaughtUp;
                }
            }
        }
        Progress::More
    }
}

/// A config or summary as `a.b.c = value` pairs, in order: nested objects
/// are walked, anything else (lists included) is a leaf. Keys starting
/// with `_wandb` are W&B's own bookkeeping and are left out.
pub fn flatten(tree: &Tree) -> Vec<(String, Value)> {
    fn walk(prefix: &str, members: Vec<(String, Value)>, out: &mut Vec<(String, Value)>) {
        for (key, value) in members {
            let path = if prefix.is_empty() {
                key
            } else {
                format!("{prefix}.{key}")
            };
            match value {
                Value::Object(inner) if !inner.is_empty() => walk(&path, inner, out),
                leaf => out.push((path, leaf)),
            }
        }
    }
    let mut out = Vec::new();
    let members = tree
        .to_members()
        .into_iter()
        .filter(|(k, _)| k != "_wandb")
        .collect();
    walk("", members, &mut out);
    out
}

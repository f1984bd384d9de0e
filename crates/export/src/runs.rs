//! The runs table: one row per run, beside the history.
//!
//! What a notebook joins with the history on `run_id`: who the run is,
//! how it ended, and its config and summary flattened into columns
//! (`config.opt.lr`, `summary.best/acc`), as one row per run the way
//! `wandb.Api().runs()` is usually turned into a DataFrame. One table with
//! prefixed names rather than a config table and a summary table: a key
//! may be in both, and one join brings everything. The config's `_wandb`
//! entry (the SDK's telemetry) is left out of the columns; the Parquet
//! metadata keeps it.

use std::sync::Arc;

use arrow_array::RecordBatch;
use arrow_schema::{ArrowError, Schema};
use wandb_proto::json::Value;

use crate::batch::Batcher;
use crate::columns::Columns;
use crate::scan::{End, RunScan};
use crate::value::{Cell, Kind};

/// The columns every runs table has, in this order.
const FIXED: [(&str, Kind); 15] = [
    ("run_id", Kind::Str),
    ("project", Kind::Str),
    ("entity", Kind::Str),
    ("name", Kind::Str),
    ("group", Kind::Str),
    ("job_type", Kind::Str),
    ("state", Kind::Str),
    ("exit_code", Kind::Int),
    ("start_time", Kind::Float),
    ("host", Kind::Str),
    ("notes", Kind::Str),
    ("tags", Kind::Json),
    ("history_rows", Kind::Int),
    ("log", Kind::Str),
    ("log_problem", Kind::Str),
];

/// A run's row: (column, value) pairs.
fn row(run: &RunScan) -> Vec<(String, Cell<'static>)> {
    let text = |s: &str| {
        if s.is_empty() {
            Cell::Null
        } else {
            Cell::Str(s.to_string().into())
        }
    };
    let tags = Value::Array(run.tags.iter().cloned().map(Value::Str).collect());
    let problem = match &run.end {
        End::Clean => Cell::Null,
        End::Torn(e) => Cell::Str(format!("torn tail: {e}").into()),
        End::Damaged(e) => Cell::Str(format!("damaged: {e}").into()),
    };
    let mut cells: Vec<(String, Cell<'static>)> = vec![
        ("run_id".into(), text(&run.id)),
        ("project".into(), text(&run.project)),
        ("entity".into(), text(&run.entity)),
        ("name".into(), text(&run.name)),
        ("group".into(), text(&run.group)),
        ("job_type".into(), text(&run.job_type)),
        ("state".into(), text(run.state())),
        (
            "exit_code".into(),
            run.exit_code().map_or(Cell::Null, |c| Cell::Int(c.into())),
        ),
        (
            "start_time".into(),
            run.start_time.map_or(Cell::Null, Cell::Float),
        ),
        ("host".into(), text(&run.host)),
        ("notes".into(), text(&run.notes)),
        ("tags".into(), Cell::from_value(tags)),
        ("history_rows".into(), Cell::Int(run.rows as i64)),
        ("log".into(), text(&run.log.display().to_string())),
        ("log_problem".into(), problem),
    ];
    let mut config = run.config.to_value();
    if let Value::Object(members) = &mut config {
        members.retain(|(k, _)| k != "_wandb");
    }
    flatten("config".into(), config, &mut cells);
    flatten("summary".into(), run.summary.to_value(), &mut cells);
    cells
}

/// Nested objects become `a.b` columns; anything else (lists, empty
/// objects, media and other objects with a `_type`) is a leaf.
fn flatten(prefix: String, value: Value, out: &mut Vec<(String, Cell<'static>)>) {
    match value {
        Value::Object(members)
            if !members.is_empty() && !members.iter().any(|(k, _)| k == "_type") =>
        {
            for (k, v) in members {
                flatten(format!("{prefix}.{k}"), v, out);
            }
        }
        // The top-level object itself, empty: no columns.
        Value::Object(_) if !prefix.contains('.') => {}
        leaf => out.push((prefix, Cell::from_value(leaf))),
    }
}

/// The runs table, as one batch.
pub fn table(runs: &[RunScan]) -> Result<(Arc<Schema>, RecordBatch), ArrowError> {
    let rows: Vec<_> = runs.iter().map(row).collect();
    let mut columns = Columns::default();
    for (name, kind) in FIXED {
        columns.observe(name, Some(kind));
    }
    for row in &rows {
        for (name, cell) in row {
            columns.observe(name, cell.kind());
        }
    }
    let first: Vec<&str> = FIXED.iter().map(|(n, _)| *n).collect();
    let layout = columns.layout(&first, &["config.", "summary."]);
    let schema = layout.schema(&[]);
    let mut batcher = Batcher::new(&layout, schema.clone(), false, rows.len());
    for row in rows {
        for (name, cell) in row {
            batcher.put(&name, cell);
        }
        batcher.end_row("");
    }
    Ok((schema, batcher.take()?))
}

/// Every run's identity, state, config and summary as one JSON array (in
/// wandb's dialect: `NaN` stays `NaN`, which Python's `json` reads), for
/// the Parquet file's metadata.
pub fn metadata_json(runs: &[RunScan]) -> String {
    let text = |s: &str| Value::Str(s.to_string());
    let runs = runs
        .iter()
        .map(|r| {
            Value::Object(vec![
                ("run_id".into(), text(&r.id)),
                ("project".into(), text(&r.project)),
                ("entity".into(), text(&r.entity)),
                ("name".into(), text(&r.name)),
                ("group".into(), text(&r.group)),
                ("job_type".into(), text(&r.job_type)),
                ("state".into(), text(r.state())),
                (
                    "exit_code".into(),
                    r.exit_code().map_or(Value::Null, |c| Value::Int(c.into())),
                ),
                (
                    "start_time".into(),
                    r.start_time.map_or(Value::Null, Value::Float),
                ),
                ("history_rows".into(), Value::Int(r.rows as i64)),
                ("log".into(), text(&r.log.display().to_string())),
                ("config".into(), r.config.to_value()),
                ("summary".into(), r.summary.to_value()),
            ])
        })
        .collect();
    Value::Array(runs).to_json()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flattens_nested_keys_and_keeps_lists_whole() {
        let value =
            Value::parse(r#"{"lr":0.1,"opt":{"name":"adam","betas":[0.9,0.99],"x":{}},"e":{},"img":{"_type":"image-file","size":3}}"#)
                .unwrap();
        let mut out = Vec::new();
        flatten("config".into(), value, &mut out);
        assert_eq!(
            out,
            [
                ("config.lr".to_string(), Cell::Float(0.1)),
                ("config.opt.name".to_string(), Cell::Str("adam".into())),
                (
                    "config.opt.betas".to_string(),
                    Cell::Json("[0.9,0.99]".into())
                ),
                ("config.opt.x".to_string(), Cell::Json("{}".into())),
                ("config.e".to_string(), Cell::Json("{}".into())),
                (
                    "config.img".to_string(),
                    Cell::Json(r#"{"_type":"image-file","size":3}"#.into())
                ),
            ]
        );
        let mut out = Vec::new();
        flatten("summary".into(), Value::Object(vec![]), &mut out);
        assert!(out.is_empty());
    }
}

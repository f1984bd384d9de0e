//! JSON Lines output: one object per history row, for `jq`, scripts and
//! `pd.read_json(lines=True)` / `pl.read_ndjson`.
//!
//! A row holds only the keys it has (an absent value is left out, as it
//! was never logged); objects and lists are JSON again, not text. JSON has
//! no NaN or infinity, so those are `null`, as `JSON.stringify` writes
//! them: Parquet keeps them.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::sync::Arc;

use arrow_array::RecordBatch;
use arrow_schema::Schema;
use serde::Serialize;
use serde::ser::{SerializeMap, SerializeSeq, Serializer};
use wandb_proto::json::Value;

use crate::cells::{CellRef, ColumnRef};
use crate::columns::TYPE_KEY;
use crate::{ExportError, Sink};

pub struct JsonlSink {
    out: BufWriter<File>,
    names: Vec<String>,
    /// Columns of JSON text, written as JSON values.
    json: Vec<bool>,
}

impl JsonlSink {
    pub fn new(file: File, schema: &Arc<Schema>) -> Self {
        Self {
            out: BufWriter::with_capacity(1 << 16, file),
            names: schema.fields().iter().map(|f| f.name().clone()).collect(),
            json: schema
                .fields()
                .iter()
                .map(|f| f.metadata().get(TYPE_KEY).is_some_and(|t| t == "json"))
                .collect(),
        }
    }
}

/// One row of a batch, serialised as an object.
struct Row<'a> {
    names: &'a [String],
    json: &'a [bool],
    columns: &'a [ColumnRef<'a>],
    row: usize,
}

impl Serialize for Row<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut map = s.serialize_map(None)?;
        for ((name, json), column) in self.names.iter().zip(self.json).zip(self.columns) {
            match column.get(self.row) {
                CellRef::Null => {}
                CellRef::Str(text) if *json => match Value::parse(text) {
                    Ok(v) => map.serialize_entry(name, &Json(&v))?,
                    Err(_) => map.serialize_entry(name, text)?,
                },
                cell => map.serialize_entry(name, &Plain(cell))?,
            }
        }
        map.end()
    }
}

/// A typed cell.
struct Plain<'a>(CellRef<'a>);

impl Serialize for Plain<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self.0 {
            CellRef::Null => s.serialize_unit(),
            CellRef::Int(i) => s.serialize_i64(i),
            CellRef::Float(x) if x.is_finite() => s.serialize_f64(x),
            CellRef::Float(_) => s.serialize_unit(),
            CellRef::Bool(b) => s.serialize_bool(b),
            CellRef::Str(text) => s.serialize_str(text),
        }
    }
}

/// A value of wandb's JSON dialect, as standard JSON.
struct Json<'a>(&'a Value);

impl Serialize for Json<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self.0 {
            Value::Null => s.serialize_unit(),
            Value::Bool(b) => s.serialize_bool(*b),
            Value::Int(i) => s.serialize_i64(*i),
            Value::Float(x) if x.is_finite() => s.serialize_f64(*x),
            Value::Float(_) => s.serialize_unit(),
            Value::Str(text) => s.serialize_str(text),
            Value::Array(items) => {
                let mut seq = s.serialize_seq(Some(items.len()))?;
                for item in items {
                    seq.serialize_element(&Json(item))?;
                }
                seq.end()
            }
            Value::Object(members) => {
                let mut map = s.serialize_map(Some(members.len()))?;
                for (k, v) in members {
                    map.serialize_entry(k, &Json(v))?;
                }
                map.end()
            }
        }
    }
}

impl Sink for JsonlSink {
    fn write(&mut self, batch: &RecordBatch) -> Result<(), ExportError> {
        let columns: Vec<ColumnRef<'_>> = batch.columns().iter().map(ColumnRef::new).collect();
        for row in 0..batch.num_rows() {
            let row = Row {
                names: &self.names,
                json: &self.json,
                columns: &columns,
                row,
            };
            serde_json::to_writer(&mut self.out, &row)?;
            self.out.write_all(b"\n").map_err(ExportError::Write)?;
        }
        Ok(())
    }

    fn finish(self: Box<Self>) -> Result<(), ExportError> {
        self.out
            .into_inner()
            .map_err(|e| ExportError::Write(e.into_error()))?;
        Ok(())
    }
}

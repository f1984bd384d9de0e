//! CSV output, for spreadsheets and tools without Parquet.
//!
//! A header of column names, then a row per history row. CSV has no types
//! and no null: an absent value is an empty field (so is an empty
//! string), floats are written shortest-exact with `NaN`, `inf` and
//! `-inf` (which pandas, polars and Python's `float` read back), and
//! objects, lists and mixed columns as their JSON text.

use std::fmt::Write as _;
use std::fs::File;

use arrow_array::RecordBatch;
use arrow_schema::Schema;

use crate::cells::{CellRef, ColumnRef};
use crate::{ExportError, Sink};

pub struct CsvSink {
    writer: csv::Writer<File>,
    /// One buffer per column, reused from row to row.
    fields: Vec<String>,
}

impl CsvSink {
    pub fn new(file: File, schema: &Schema) -> Result<Self, ExportError> {
        let mut writer = csv::WriterBuilder::new()
            .buffer_capacity(1 << 16)
            .from_writer(file);
        writer.write_record(schema.fields().iter().map(|f| f.name().as_str()))?;
        Ok(Self {
            writer,
            fields: vec![String::new(); schema.fields().len()],
        })
    }
}

/// Writes a cell as CSV text into `out` (cleared first).
pub fn format_cell(cell: CellRef<'_>, out: &mut String) {
    out.clear();
    match cell {
        CellRef::Null => {}
        CellRef::Int(i) => {
            let _ = write!(out, "{i}");
        }
        CellRef::Float(x) => out.push_str(ryu::Buffer::new().format(x)),
        CellRef::Bool(b) => out.push_str(if b { "true" } else { "false" }),
        CellRef::Str(s) => out.push_str(s),
    }
}

impl Sink for CsvSink {
    fn write(&mut self, batch: &RecordBatch) -> Result<(), ExportError> {
        let columns: Vec<ColumnRef<'_>> = batch.columns().iter().map(ColumnRef::new).collect();
        for row in 0..batch.num_rows() {
            for (column, field) in columns.iter().zip(&mut self.fields) {
                format_cell(column.get(row), field);
            }
            self.writer.write_record(&self.fields)?;
        }
        Ok(())
    }

    fn finish(self: Box<Self>) -> Result<(), ExportError> {
        self.writer
            .into_inner()
            .map_err(|e| ExportError::Write(e.into_error()))?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cells_as_text() {
        let mut s = String::new();
        let cases: [(CellRef<'_>, &str); 10] = [
            (CellRef::Null, ""),
            (CellRef::Int(0), "0"),
            (CellRef::Int(i64::MIN), "-9223372036854775808"),
            (CellRef::Int(i64::MAX), "9223372036854775807"),
            (CellRef::Float(0.1), "0.1"),
            (CellRef::Float(f64::NAN), "NaN"),
            (CellRef::Float(f64::NEG_INFINITY), "-inf"),
            (CellRef::Float(1e21), "1e21"),
            (CellRef::Bool(true), "true"),
            (CellRef::Str("a,b"), "a,b"),
        ];
        for (cell, text) in cases {
            format_cell(cell, &mut s);
            assert_eq!(s, text, "{cell:?}");
        }
    }
}

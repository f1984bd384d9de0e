//! Rows into Arrow record batches, a bounded number at a time.
//!
//! The second pass appends each row's cells to one Arrow builder per
//! column and hands a [`RecordBatch`] to the output every `capacity` rows,
//! so memory holds one batch however long the run. Every format writes
//! from these batches: one way of typing cells for all three.

use std::sync::Arc;

use arrow_array::builder::{
    ArrayBuilder as _, BooleanBuilder, Float64Builder, Int64Builder, StringBuilder,
};
use arrow_array::{ArrayRef, RecordBatch};
use arrow_schema::{ArrowError, Schema};

use crate::columns::Layout;
use crate::value::{Cell, Kind};

/// The builder of one column.
enum Builder {
    Int(Int64Builder),
    Float(Float64Builder),
    Bool(BooleanBuilder),
    /// Strings, or JSON text (`json`).
    Str {
        b: StringBuilder,
        json: bool,
    },
}

impl Builder {
    fn new(kind: Kind, capacity: usize) -> Self {
        match kind {
            Kind::Int => Builder::Int(Int64Builder::with_capacity(capacity)),
            Kind::Float => Builder::Float(Float64Builder::with_capacity(capacity)),
            Kind::Bool => Builder::Bool(BooleanBuilder::with_capacity(capacity)),
            Kind::Str | Kind::Json => Builder::Str {
                b: StringBuilder::new(),
                json: kind == Kind::Json,
            },
        }
    }

    fn len(&self) -> usize {
        match self {
            Builder::Int(b) => b.len(),
            Builder::Float(b) => b.len(),
            Builder::Bool(b) => b.len(),
            Builder::Str { b, .. } => b.len(),
        }
    }

    fn pad(&mut self, to: usize) {
        let n = to.saturating_sub(self.len());
        if n == 0 {
            return;
        }
        match self {
            Builder::Int(b) => b.append_nulls(n),
            Builder::Float(b) => b.append_nulls(n),
            Builder::Bool(b) => b.append_nulls(n),
            Builder::Str { b, .. } => {
                for _ in 0..n {
                    b.append_null();
                }
            }
        }
    }

    /// Appends `cell`, converted to the column's type (the first pass made
    /// the type fit every value; anything else would be a null).
    fn push(&mut self, cell: &Cell<'_>) {
        match (self, cell) {
            (b, Cell::Null) => b.pad(b.len() + 1),
            (Builder::Int(b), Cell::Int(i)) => b.append_value(*i),
            (Builder::Float(b), Cell::Float(x)) => b.append_value(*x),
            (Builder::Float(b), Cell::Int(i)) => b.append_value(*i as f64),
            (Builder::Bool(b), Cell::Bool(v)) => b.append_value(*v),
            (Builder::Str { b, json: false }, Cell::Str(s)) => b.append_value(s),
            (Builder::Str { b, json: true }, cell) => b.append_value(cell.json_text()),
            (b, _) => b.pad(b.len() + 1),
        }
    }

    fn finish(&mut self) -> ArrayRef {
        match self {
            Builder::Int(b) => Arc::new(b.finish()),
            Builder::Float(b) => Arc::new(b.finish()),
            Builder::Bool(b) => Arc::new(b.finish()),
            Builder::Str { b, .. } => Arc::new(b.finish()),
        }
    }
}

/// Rows of one table being gathered into a batch.
pub struct Batcher<'a> {
    layout: &'a Layout,
    schema: Arc<Schema>,
    /// The run ID column, when the table has one (it leads the schema).
    run_id: Option<StringBuilder>,
    columns: Vec<Builder>,
    rows: usize,
    capacity: usize,
    /// The column of each item place in the row before.
    hints: Vec<usize>,
    /// The place of the next item in the row being gathered.
    item: usize,
}

impl<'a> Batcher<'a> {
    /// `schema` is the layout's, with a leading run ID field if
    /// `with_run_id`.
    pub fn new(
        layout: &'a Layout,
        schema: Arc<Schema>,
        with_run_id: bool,
        capacity: usize,
    ) -> Self {
        let capacity = capacity.max(1);
        Self {
            columns: layout
                .columns
                .iter()
                .map(|c| Builder::new(c.kind, capacity))
                .collect(),
            layout,
            schema,
            run_id: with_run_id.then(StringBuilder::new),
            rows: 0,
            capacity,
            hints: Vec::new(),
            item: 0,
        }
    }

    /// Puts a value into the row being gathered. A column given twice in
    /// a row keeps its first value; a name not in the layout is ignored.
    pub fn put(&mut self, name: &str, cell: Cell<'_>) {
        // Rows of one run mostly list their keys in the same order: the
        // column of this item's place in the last row is checked before
        // the name is hashed.
        let hint = self.hints.get(self.item).copied();
        let position = match hint {
            Some(i) if self.layout.columns[i].name == name => Some(i),
            _ => {
                let found = self.layout.position(name);
                if let Some(i) = found {
                    match self.hints.get_mut(self.item) {
                        Some(h) => *h = i,
                        None => self.hints.push(i),
                    }
                }
                found
            }
        };
        self.item += 1;
        if let Some(i) = position {
            let b = &mut self.columns[i];
            if b.len() <= self.rows {
                b.pad(self.rows);
                b.push(&cell);
            }
        }
    }

    /// Ends the row being gathered (its run is `run_id`, for a table with
    /// a run ID column): columns it had no value for are null.
    pub fn end_row(&mut self, run_id: &str) {
        self.item = 0;
        if let Some(b) = &mut self.run_id {
            b.append_value(run_id);
        }
        self.rows += 1;
    }

    /// Whether the batch holds its capacity: time to [`take`](Self::take).
    pub fn is_full(&self) -> bool {
        self.rows >= self.capacity
    }

    pub fn is_empty(&self) -> bool {
        self.rows == 0
    }

    /// The rows gathered so far as a batch; the batcher starts over.
    pub fn take(&mut self) -> Result<RecordBatch, ArrowError> {
        let rows = self.rows;
        let mut arrays: Vec<ArrayRef> = Vec::with_capacity(self.columns.len() + 1);
        if let Some(b) = &mut self.run_id {
            arrays.push(Arc::new(b.finish()));
        }
        for b in &mut self.columns {
            b.pad(rows);
            arrays.push(b.finish());
        }
        self.rows = 0;
        RecordBatch::try_new(self.schema.clone(), arrays)
    }
}

#[cfg(test)]
mod tests {
    use arrow_array::Array;
    use arrow_array::cast::AsArray;
    use arrow_array::types::{Float64Type, Int64Type};
    use arrow_schema::{DataType, Field};

    use super::*;
    use crate::columns::Column;

    #[test]
    fn rows_fill_columns_with_nulls_where_absent() {
        let layout = Layout::new(vec![
            Column {
                name: "_step".into(),
                kind: Kind::Int,
            },
            Column {
                name: "loss".into(),
                kind: Kind::Float,
            },
            Column {
                name: "mixed".into(),
                kind: Kind::Json,
            },
        ]);
        let schema = layout.schema(&[Field::new("run_id", DataType::Utf8, false)]);
        let mut b = Batcher::new(&layout, schema, true, 2);
        b.put("_step", Cell::Int(0));
        b.put("loss", Cell::Int(1));
        b.put("mixed", Cell::Str("x".into()));
        b.put("unknown", Cell::Int(9));
        b.end_row("a");
        assert!(!b.is_full());
        b.put("mixed", Cell::Int(2));
        b.put("mixed", Cell::Int(3));
        b.put("_step", Cell::Int(1));
        b.end_row("a");
        assert!(b.is_full());
        let batch = b.take().unwrap();
        assert_eq!(batch.num_rows(), 2);
        assert_eq!(batch.column(0).as_string::<i32>().value(1), "a");
        let step = batch.column(1).as_primitive::<Int64Type>();
        assert_eq!((step.value(0), step.value(1)), (0, 1));
        let loss = batch.column(2).as_primitive::<Float64Type>();
        assert_eq!(loss.value(0), 1.0);
        assert!(loss.is_null(1));
        let mixed = batch.column(3).as_string::<i32>();
        assert_eq!((mixed.value(0), mixed.value(1)), ("\"x\"", "2"));
        assert!(b.is_empty());
        assert_eq!(b.take().unwrap().num_rows(), 0);
    }
}

//! The columns of a table, found in the first pass.
//!
//! A column's type has to be known before its first row is written (a
//! Parquet file has one schema), and a metric may be logged first as `1`
//! and later as `0.5`, or only on some steps. So the first pass sees every
//! value and merges the types ([`Kind::merge`]); the second writes rows
//! against the finished [`Layout`]. Only names and types are kept: memory
//! grows with the number of distinct metrics, not with the rows.

use std::collections::HashMap;
use std::sync::Arc;

use arrow_schema::{DataType, Field, Schema};

use crate::value::Kind;

/// Field metadata key marking a column of JSON text (`"json"`), so a
/// reader can tell it from a column of plain strings.
pub const TYPE_KEY: &str = "wandb.type";

/// Column names and types as they are discovered.
#[derive(Debug, Default)]
pub struct Columns {
    index: HashMap<String, usize, foldhash::fast::RandomState>,
    names: Vec<String>,
    /// `None` while only nulls were seen.
    kinds: Vec<Option<Kind>>,
}

impl Columns {
    /// Notes a value of `kind` (`None`: null) in column `name`.
    pub fn observe(&mut self, name: &str, kind: Option<Kind>) {
        match self.index.get(name) {
            Some(&i) => {
                let slot = &mut self.kinds[i];
                *slot = match (*slot, kind) {
                    (Some(a), Some(b)) => Some(a.merge(b)),
                    (a, b) => a.or(b),
                };
            }
            None => {
                self.index.insert(name.to_string(), self.names.len());
                self.names.push(name.to_string());
                self.kinds.push(kind);
            }
        }
    }

    pub fn is_empty(&self) -> bool {
        self.names.is_empty()
    }

    /// The final columns, `first` (those of them that were seen) leading
    /// in that order, then the others by name, group by group (`groups`:
    /// name prefixes such as `config.`; names in none come last), within
    /// a group names starting with `_` (wandb's own: `_runtime`,
    /// `_timestamp`) after the user's. Columns that only ever held nulls
    /// are Float64.
    ///
    /// Sorted rather than in the order first logged: wandb-core writes a
    /// row's items in Go map order, so "first logged" would differ from
    /// one export to the next.
    pub fn layout(self, first: &[&str], groups: &[&str]) -> Layout {
        let rank = |name: &str| match first.iter().position(|f| *f == name) {
            Some(p) => (0, p, false),
            None => {
                let (g, rest) = groups
                    .iter()
                    .enumerate()
                    .find_map(|(g, prefix)| name.strip_prefix(prefix).map(|rest| (g, rest)))
                    .unwrap_or((groups.len(), name));
                (1, g, rest.starts_with('_'))
            }
        };
        let mut order: Vec<usize> = (0..self.names.len()).collect();
        order.sort_by(|&a, &b| {
            let (na, nb) = (&self.names[a], &self.names[b]);
            rank(na).cmp(&rank(nb)).then_with(|| na.cmp(nb))
        });
        let columns: Vec<Column> = order
            .iter()
            .map(|&i| Column {
                name: self.names[i].clone(),
                kind: self.kinds[i].unwrap_or(Kind::Float),
            })
            .collect();
        Layout::new(columns)
    }
}

/// One column of a table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Column {
    pub name: String,
    pub kind: Kind,
}

impl Column {
    pub fn field(&self) -> Field {
        let data_type = match self.kind {
            Kind::Int => DataType::Int64,
            Kind::Float => DataType::Float64,
            Kind::Bool => DataType::Boolean,
            Kind::Str | Kind::Json => DataType::Utf8,
        };
        let field = Field::new(&self.name, data_type, true);
        if self.kind == Kind::Json {
            field.with_metadata([(TYPE_KEY, "json")])
        } else {
            field
        }
    }
}

/// The columns of a table, in order, found by name.
#[derive(Debug, Clone)]
pub struct Layout {
    pub columns: Vec<Column>,
    index: HashMap<String, usize, foldhash::fast::RandomState>,
}

impl Layout {
    pub fn new(columns: Vec<Column>) -> Self {
        let index = columns
            .iter()
            .enumerate()
            .map(|(i, c)| (c.name.clone(), i))
            .collect();
        Self { columns, index }
    }

    /// Names column `name` `to` in the output; rows still fill it by its
    /// old name. (A logged metric called `run_id` beside the run ID
    /// column of a multi-run export.)
    pub fn rename(&mut self, name: &str, to: String) {
        if let Some(i) = self.position(name) {
            self.columns[i].name = to;
        }
    }

    pub fn position(&self, name: &str) -> Option<usize> {
        self.index.get(name).copied()
    }

    pub fn len(&self) -> usize {
        self.columns.len()
    }

    pub fn is_empty(&self) -> bool {
        self.columns.is_empty()
    }

    /// The Arrow schema, with `leading` fields (the run ID) before the
    /// columns.
    pub fn schema(&self, leading: &[Field]) -> Arc<Schema> {
        let fields: Vec<Field> = leading
            .iter()
            .cloned()
            .chain(self.columns.iter().map(Column::field))
            .collect();
        Arc::new(Schema::new(fields))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn types_merge_and_columns_sort_with_step_first_and_wandb_keys_last() {
        let mut c = Columns::default();
        c.observe("loss", Some(Kind::Int));
        c.observe("_timestamp", Some(Kind::Float));
        c.observe("acc", None);
        c.observe("_step", Some(Kind::Int));
        c.observe("loss", Some(Kind::Float));
        c.observe("text", Some(Kind::Str));
        c.observe("text", Some(Kind::Int));
        c.observe("never", None);
        c.observe("acc", Some(Kind::Bool));
        let layout = c.layout(&["_step"], &[]);
        let cols: Vec<(&str, Kind)> = layout
            .columns
            .iter()
            .map(|c| (c.name.as_str(), c.kind))
            .collect();
        assert_eq!(
            cols,
            [
                ("_step", Kind::Int),
                ("acc", Kind::Bool),
                ("loss", Kind::Float),
                ("never", Kind::Float),
                ("text", Kind::Json),
                ("_timestamp", Kind::Float),
            ]
        );
        assert_eq!(layout.position("loss"), Some(2));
        let schema = layout.schema(&[Field::new("run_id", DataType::Utf8, false)]);
        assert_eq!(schema.field(0).name(), "run_id");
        assert_eq!(schema.field(5).data_type(), &DataType::Utf8);
        assert_eq!(schema.field(5).metadata()[TYPE_KEY], "json");

        let mut c = Columns::default();
        for name in [
            "summary.b",
            "config._wandb",
            "summary._runtime",
            "x",
            "config.a",
            "run_id",
        ] {
            c.observe(name, Some(Kind::Int));
        }
        let names: Vec<String> = c
            .layout(&["run_id"], &["config.", "summary."])
            .columns
            .into_iter()
            .map(|c| c.name)
            .collect();
        assert_eq!(
            names,
            [
                "run_id",
                "config.a",
                "config._wandb",
                "summary.b",
                "summary._runtime",
                "x"
            ]
        );
    }
}

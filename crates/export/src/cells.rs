//! A batch's columns read back cell by cell, for the text formats.

use arrow_array::cast::AsArray;
use arrow_array::types::{Float64Type, Int64Type};
use arrow_array::{Array, ArrayRef, BooleanArray, Float64Array, Int64Array, StringArray};
use arrow_schema::DataType;

/// One column of a batch, typed.
pub enum ColumnRef<'a> {
    Int(&'a Int64Array),
    Float(&'a Float64Array),
    Bool(&'a BooleanArray),
    Str(&'a StringArray),
}

/// A cell of a [`ColumnRef`].
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum CellRef<'a> {
    Null,
    Int(i64),
    Float(f64),
    Bool(bool),
    Str(&'a str),
}

impl<'a> ColumnRef<'a> {
    /// The batches of this crate hold only these four types.
    pub fn new(array: &'a ArrayRef) -> Self {
        match array.data_type() {
            DataType::Int64 => ColumnRef::Int(array.as_primitive::<Int64Type>()),
            DataType::Float64 => ColumnRef::Float(array.as_primitive::<Float64Type>()),
            DataType::Boolean => ColumnRef::Bool(array.as_boolean()),
            DataType::Utf8 => ColumnRef::Str(array.as_string::<i32>()),
            other => unreachable!("export batches hold no {other} columns"),
        }
    }

    pub fn get(&self, row: usize) -> CellRef<'a> {
        match *self {
            ColumnRef::Int(a) if a.is_valid(row) => CellRef::Int(a.value(row)),
            ColumnRef::Float(a) if a.is_valid(row) => CellRef::Float(a.value(row)),
            ColumnRef::Bool(a) if a.is_valid(row) => CellRef::Bool(a.value(row)),
            ColumnRef::Str(a) if a.is_valid(row) => CellRef::Str(a.value(row)),
            _ => CellRef::Null,
        }
    }
}

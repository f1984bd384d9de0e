//! History values, from the log's text to typed cells.
//!
//! Every value in a history row is `value_json`, text in wandb's JSON
//! dialect (`NaN` and `±Infinity` bare); rare SDK settings send a typed
//! value instead. Both passes over a log read a value with [`Cell::parse`]
//! (so a column's type seen in the first pass is the type its values have
//! in the second), which borrows from the record and reads the common
//! cases (numbers, plain strings, booleans) without the general parser.

use std::borrow::Cow;

use wandb_proto::json::{self, Value};
use wandb_proto::view::TypedValue;

/// One value of a row.
#[derive(Debug, Clone, PartialEq)]
pub enum Cell<'a> {
    Null,
    Bool(bool),
    Int(i64),
    Float(f64),
    Str(Cow<'a, str>),
    /// An object or array (a dict, a media file's description, a list):
    /// its JSON text, as the log holds it.
    Json(Cow<'a, str>),
}

/// A column's type: the types its values had, merged ([`Kind::merge`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Int,
    Float,
    Bool,
    Str,
    /// JSON text: objects and arrays, and columns of mixed types.
    Json,
}

impl Kind {
    /// The type of a column holding values of both kinds: integers and
    /// floats make floats; any other mix is JSON text (nothing is lost).
    pub fn merge(self, other: Kind) -> Kind {
        match (self, other) {
            (a, b) if a == b => a,
            (Kind::Int, Kind::Float) | (Kind::Float, Kind::Int) => Kind::Float,
            _ => Kind::Json,
        }
    }
}

impl<'a> Cell<'a> {
    /// Reads `value_json`. Text that is not JSON is kept as a string.
    pub fn parse(text: &'a str) -> Cell<'a> {
        let t = text.trim_matches([' ', '\t', '\n', '\r']);
        match t.as_bytes().first() {
            Some(b'0'..=b'9' | b'-') => {
                if let Some(cell) = number(t) {
                    return cell;
                }
            }
            Some(b'"') => {
                let inner = &t[1..];
                if let Some(inner) = inner.strip_suffix('"')
                    && !inner.bytes().any(|b| b == b'"' || b == b'\\' || b < 0x20)
                {
                    return Cell::Str(Cow::Borrowed(inner));
                }
            }
            Some(b'{' | b'[') => return Cell::Json(Cow::Borrowed(t)),
            _ => match t {
                "true" => return Cell::Bool(true),
                "false" => return Cell::Bool(false),
                "null" => return Cell::Null,
                "NaN" => return Cell::Float(f64::NAN),
                "Infinity" => return Cell::Float(f64::INFINITY),
                _ => {}
            },
        }
        match Value::parse(t) {
            Ok(v) => Cell::from_value(v),
            Err(_) => Cell::Str(Cow::Borrowed(text)),
        }
    }

    /// A typed history value (`x_history_value_encoding`).
    pub fn from_typed(value: TypedValue<'a>) -> Cell<'a> {
        match value {
            TypedValue::None => Cell::Null,
            TypedValue::Bool(b) => Cell::Bool(b),
            TypedValue::Int(i) => Cell::Int(i),
            TypedValue::Number(x) => Cell::Float(x),
            TypedValue::Text(s) => Cell::Str(Cow::Borrowed(s)),
            TypedValue::Json(s) => Cell::parse(s),
        }
    }

    /// A parsed value (summary and config leaves).
    pub fn from_value(value: Value) -> Cell<'static> {
        match value {
            Value::Null => Cell::Null,
            Value::Bool(b) => Cell::Bool(b),
            Value::Int(i) => Cell::Int(i),
            Value::Float(x) => Cell::Float(x),
            Value::Str(s) => Cell::Str(Cow::Owned(s)),
            v @ (Value::Array(_) | Value::Object(_)) => Cell::Json(Cow::Owned(v.to_json())),
        }
    }

    /// The value as a JSON value (JSON text parsed; text that does not
    /// parse stays a string).
    pub fn to_value(&self) -> Value {
        match self {
            Cell::Null => Value::Null,
            Cell::Bool(b) => Value::Bool(*b),
            Cell::Int(i) => Value::Int(*i),
            Cell::Float(x) => Value::Float(*x),
            Cell::Str(s) => Value::Str(s.to_string()),
            Cell::Json(text) => Value::parse(text).unwrap_or_else(|_| Value::Str(text.to_string())),
        }
    }

    /// The column type this value asks for; `None` for null.
    pub fn kind(&self) -> Option<Kind> {
        match self {
            Cell::Null => None,
            Cell::Bool(_) => Some(Kind::Bool),
            Cell::Int(_) => Some(Kind::Int),
            Cell::Float(_) => Some(Kind::Float),
            Cell::Str(_) => Some(Kind::Str),
            Cell::Json(_) => Some(Kind::Json),
        }
    }

    /// The value as JSON text in wandb's dialect, for a JSON column.
    pub fn json_text(&self) -> Cow<'_, str> {
        match self {
            Cell::Null => Cow::Borrowed("null"),
            Cell::Bool(b) => Cow::Borrowed(if *b { "true" } else { "false" }),
            Cell::Int(i) => Cow::Owned(i.to_string()),
            Cell::Float(x) => {
                let mut out = String::new();
                json::write_float(*x, &mut out);
                Cow::Owned(out)
            }
            Cell::Str(s) => {
                let mut out = String::with_capacity(s.len() + 2);
                json::write_str(s, &mut out);
                Cow::Owned(out)
            }
            Cell::Json(text) => Cow::Borrowed(text),
        }
    }
}

/// A JSON number (or `-Infinity`) without the general parser: integers
/// that fit an `i64` stay integers (`-0` is a float, as wandb reads it).
fn number(t: &str) -> Option<Cell<'_>> {
    if t == "-Infinity" {
        return Some(Cell::Float(f64::NEG_INFINITY));
    }
    let integral = json_number(t)?;
    if integral
        && t != "-0"
        && let Ok(i) = t.parse::<i64>()
    {
        return Some(Cell::Int(i));
    }
    // JSON's grammar is a subset of what Rust's parser takes.
    t.parse::<f64>().ok().map(Cell::Float)
}

/// Whether `t` is a number in JSON's grammar
/// (`-?(0|[1-9][0-9]*)(.[0-9]+)?([eE][+-]?[0-9]+)?`), and if so whether
/// it is written as an integer.
fn json_number(t: &str) -> Option<bool> {
    let b = t.as_bytes();
    let mut i = usize::from(b.first() == Some(&b'-'));
    let digits = |i: &mut usize| {
        let from = *i;
        while b.get(*i).is_some_and(u8::is_ascii_digit) {
            *i += 1;
        }
        *i > from
    };
    match b.get(i) {
        Some(b'0') => i += 1,
        Some(b'1'..=b'9') => {
            digits(&mut i);
        }
        _ => return None,
    }
    let mut integral = true;
    if b.get(i) == Some(&b'.') {
        i += 1;
        integral = false;
        if !digits(&mut i) {
            return None;
        }
    }
    if let Some(b'e' | b'E') = b.get(i) {
        i += 1;
        integral = false;
        if let Some(b'+' | b'-') = b.get(i) {
            i += 1;
        }
        if !digits(&mut i) {
            return None;
        }
    }
    (i == b.len()).then_some(integral)
}

/// The kind [`Cell::parse`] would give `text`, without converting it
/// (the first pass needs only this): no float is parsed.
pub fn kind_of(text: &str) -> Option<Kind> {
    let t = text.trim_matches([' ', '\t', '\n', '\r']);
    match t.as_bytes().first() {
        Some(b'0'..=b'9' | b'-') => {
            if t == "-Infinity" {
                return Some(Kind::Float);
            }
            if let Some(integral) = json_number(t) {
                let digits = t.len() - usize::from(t.starts_with('-'));
                // Up to 18 digits always fit an i64; more may not.
                let int = integral && t != "-0" && (digits <= 18 || t.parse::<i64>().is_ok());
                return Some(if int { Kind::Int } else { Kind::Float });
            }
        }
        // A string, whatever its escapes (or the text itself, if bad).
        Some(b'"') => return Some(Kind::Str),
        Some(b'{' | b'[') => return Some(Kind::Json),
        _ => match t {
            "true" | "false" => return Some(Kind::Bool),
            "null" => return None,
            "NaN" | "Infinity" => return Some(Kind::Float),
            _ => {}
        },
    }
    Cell::parse(text).kind()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_wandb_dialect() {
        assert_eq!(Cell::parse("1"), Cell::Int(1));
        assert_eq!(Cell::parse("-12"), Cell::Int(-12));
        assert_eq!(Cell::parse("0.5"), Cell::Float(0.5));
        assert_eq!(Cell::parse("1e+06"), Cell::Float(1e6));
        assert_eq!(Cell::parse("1.5e-05"), Cell::Float(1.5e-5));
        assert_eq!(
            Cell::parse("1180591620717411303424"),
            Cell::Float(1180591620717411303424.0)
        );
        assert!(matches!(Cell::parse("NaN"), Cell::Float(x) if x.is_nan()));
        assert_eq!(Cell::parse("Infinity"), Cell::Float(f64::INFINITY));
        assert_eq!(Cell::parse("-Infinity"), Cell::Float(f64::NEG_INFINITY));
        assert!(matches!(Cell::parse("-0"), Cell::Float(x) if x == 0.0 && x.is_sign_negative()));
        assert_eq!(Cell::parse("true"), Cell::Bool(true));
        assert_eq!(Cell::parse("null"), Cell::Null);
        assert_eq!(Cell::parse("\"hi\""), Cell::Str("hi".into()));
        assert_eq!(Cell::parse("\"a\\\"b\\n\""), Cell::Str("a\"b\n".into()));
        assert_eq!(Cell::parse("\"é\""), Cell::Str("é".into()));
        assert_eq!(Cell::parse("[1,2]"), Cell::Json("[1,2]".into()));
        assert_eq!(
            Cell::parse("{\"_type\":\"image-file\"}"),
            Cell::Json("{\"_type\":\"image-file\"}".into())
        );
        // Not JSON: kept as written.
        assert_eq!(Cell::parse("1.2.3"), Cell::Str("1.2.3".into()));
        assert_eq!(Cell::parse("01"), Cell::Str("01".into()));
        assert_eq!(Cell::parse("1."), Cell::Str("1.".into()));
        assert_eq!(Cell::parse("inf"), Cell::Str("inf".into()));
        assert_eq!(Cell::parse("-"), Cell::Str("-".into()));
    }

    #[test]
    fn kind_of_agrees_with_parse() {
        for text in [
            "0",
            "-0",
            "7",
            "-12",
            "0.5",
            "1e+06",
            "1E5",
            "-1.5e-05",
            "01",
            "1.",
            ".5",
            "1.2.3",
            "+1",
            "-",
            "123456789012345678",
            "9223372036854775807",
            "9223372036854775808",
            "-9223372036854775808",
            "-9223372036854775809",
            "1180591620717411303424",
            "NaN",
            "Infinity",
            "-Infinity",
            "inf",
            "true",
            "false",
            "null",
            "\"s\"",
            "\"a\\\"b\"",
            "\"bad",
            "[1]",
            "{}",
            " 3 ",
            "",
            "x",
            "nul",
        ] {
            assert_eq!(kind_of(text), Cell::parse(text).kind(), "{text:?}");
        }
    }

    #[test]
    fn kinds_merge_to_floats_or_json() {
        assert_eq!(Kind::Int.merge(Kind::Int), Kind::Int);
        assert_eq!(Kind::Int.merge(Kind::Float), Kind::Float);
        assert_eq!(Kind::Float.merge(Kind::Int), Kind::Float);
        assert_eq!(Kind::Int.merge(Kind::Str), Kind::Json);
        assert_eq!(Kind::Bool.merge(Kind::Int), Kind::Json);
        assert_eq!(Kind::Json.merge(Kind::Json), Kind::Json);
    }

    #[test]
    fn json_text_round_trips() {
        for text in [
            "1",
            "0.5",
            "NaN",
            "-Infinity",
            "true",
            "null",
            "\"a\\\"b\"",
            "[1,{\"x\":2}]",
        ] {
            assert_eq!(Cell::parse(text).json_text(), text);
        }
    }
}

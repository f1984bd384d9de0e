//! Values a run logs, and how they are written on the wire.
//!
//! W&B stores every value as JSON (`value_json`). The Python SDK writes
//! non-finite floats as the bare literals `NaN`, `Infinity` and
//! `-Infinity` (Python's `json` does), and so do we: a diverging loss is
//! legitimate data, not an error.

use std::collections::BTreeMap;

use crate::media::{Histogram, Image};

/// One value of a logged row, a config entry or a summary entry.
///
/// Build it with `From`: integers, floats, bools, strings, vectors, maps,
/// `serde_json::Value`, [`Histogram`] and [`Image`].
///
/// ```
/// use wandb::Value;
/// let loss: Value = 0.25.into();
/// let epoch: Value = 3.into();
/// let nested = Value::map([("inner", 1.into()), ("deep", Value::map([("v", 2.5.into())]))]);
/// assert_eq!(nested.to_json(), r#"{"inner":1,"deep":{"v":2.5}}"#);
/// assert_eq!(Value::from(f64::NAN).to_json(), "NaN");
/// # let _ = (loss, epoch);
/// ```
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum Value {
    Null,
    Bool(bool),
    Int(i64),
    Float(f64),
    Str(String),
    List(Vec<Value>),
    /// A nested map: W&B shows its leaves as `outer.inner` keys.
    Map(Vec<(String, Value)>),
    Histogram(Histogram),
    Image(Image),
}

impl Value {
    /// A nested map from `(key, value)` pairs, in the order given.
    ///
    /// ```
    /// let v = wandb::Value::map([("a", 1.into()), ("b", true.into())]);
    /// assert_eq!(v.to_json(), r#"{"a":1,"b":true}"#);
    /// ```
    pub fn map<K: Into<String>>(items: impl IntoIterator<Item = (K, Value)>) -> Value {
        Value::Map(items.into_iter().map(|(k, v)| (k.into(), v)).collect())
    }

    /// The value as W&B's JSON (media values as their JSON description,
    /// once they are written: see [`Run::log`](crate::Run::log)).
    ///
    /// ```
    /// assert_eq!(wandb::Value::from(1.0).to_json(), "1.0");
    /// assert_eq!(wandb::Value::from(f64::NEG_INFINITY).to_json(), "-Infinity");
    /// ```
    pub fn to_json(&self) -> String {
        let mut out = String::new();
        self.write_json(&mut out);
        out
    }

    pub(crate) fn write_json(&self, out: &mut String) {
        use wandb_proto::json::{write_float, write_str};
        match self {
            Value::Null => out.push_str("null"),
            Value::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
            Value::Int(i) => {
                use std::fmt::Write as _;
                let _ = write!(out, "{i}");
            }
            Value::Float(f) => {
                let start = out.len();
                write_float(*f, out);
                // Keep floats floats, as Python writes them (`1.0`, not `1`):
                // W&B charts and sampled history tell ints and floats apart.
                if f.is_finite() && !out[start..].contains(['.', 'e']) {
                    out.push_str(".0");
                }
            }
            Value::Str(s) => write_str(s, out),
            Value::List(items) => {
                out.push('[');
                for (i, v) in items.iter().enumerate() {
                    if i > 0 {
                        out.push(',');
                    }
                    v.write_json(out);
                }
                out.push(']');
            }
            Value::Map(items) => {
                out.push('{');
                for (i, (k, v)) in items.iter().enumerate() {
                    if i > 0 {
                        out.push(',');
                    }
                    write_str(k, out);
                    out.push(':');
                    v.write_json(out);
                }
                out.push('}');
            }
            Value::Histogram(h) => h.write_json(out),
            Value::Image(img) => img.write_json(out),
        }
    }

    /// Whether the value holds media that must be written as a file first.
    pub(crate) fn has_media(&self) -> bool {
        match self {
            Value::Image(_) => true,
            Value::List(items) => items.iter().any(Value::has_media),
            Value::Map(items) => items.iter().any(|(_, v)| v.has_media()),
            _ => false,
        }
    }
}

macro_rules! from_int {
    ($($t:ty),*) => {$(
        impl From<$t> for Value {
            fn from(v: $t) -> Self {
                Value::Int(v as i64)
            }
        }
    )*};
}
from_int!(i8, i16, i32, i64, u8, u16, u32, isize);

impl From<u64> for Value {
    /// Integers beyond `i64` become floats, as W&B stores them.
    fn from(v: u64) -> Self {
        i64::try_from(v).map_or(Value::Float(v as f64), Value::Int)
    }
}

impl From<usize> for Value {
    fn from(v: usize) -> Self {
        Value::from(v as u64)
    }
}

impl From<f64> for Value {
    fn from(v: f64) -> Self {
        Value::Float(v)
    }
}

impl From<f32> for Value {
    /// Widened through its shortest decimal form, so `0.1f32` logs as `0.1`
    /// (not `0.10000000149011612`).
    fn from(v: f32) -> Self {
        if v.is_finite() {
            Value::Float(v.to_string().parse().unwrap_or(f64::from(v)))
        } else {
            Value::Float(f64::from(v))
        }
    }
}

impl From<bool> for Value {
    fn from(v: bool) -> Self {
        Value::Bool(v)
    }
}

impl From<&str> for Value {
    fn from(v: &str) -> Self {
        Value::Str(v.to_string())
    }
}

impl From<String> for Value {
    fn from(v: String) -> Self {
        Value::Str(v)
    }
}

impl<T: Into<Value>> From<Vec<T>> for Value {
    fn from(v: Vec<T>) -> Self {
        Value::List(v.into_iter().map(Into::into).collect())
    }
}

impl<T: Into<Value>> From<Option<T>> for Value {
    fn from(v: Option<T>) -> Self {
        v.map_or(Value::Null, Into::into)
    }
}

impl<K: Into<String>, V: Into<Value>> From<BTreeMap<K, V>> for Value {
    fn from(v: BTreeMap<K, V>) -> Self {
        Value::Map(v.into_iter().map(|(k, v)| (k.into(), v.into())).collect())
    }
}

impl<K: Into<String>, V: Into<Value>> From<std::collections::HashMap<K, V>> for Value {
    fn from(v: std::collections::HashMap<K, V>) -> Self {
        Value::Map(v.into_iter().map(|(k, v)| (k.into(), v.into())).collect())
    }
}

impl From<serde_json::Value> for Value {
    fn from(v: serde_json::Value) -> Self {
        match v {
            serde_json::Value::Null => Value::Null,
            serde_json::Value::Bool(b) => Value::Bool(b),
            serde_json::Value::Number(n) => match n.as_i64() {
                Some(i) => Value::Int(i),
                None => Value::Float(n.as_f64().unwrap_or(f64::NAN)),
            },
            serde_json::Value::String(s) => Value::Str(s),
            serde_json::Value::Array(a) => Value::List(a.into_iter().map(Into::into).collect()),
            serde_json::Value::Object(o) => {
                Value::Map(o.into_iter().map(|(k, v)| (k, v.into())).collect())
            }
        }
    }
}

impl From<Histogram> for Value {
    fn from(v: Histogram) -> Self {
        Value::Histogram(v)
    }
}

impl From<Image> for Value {
    fn from(v: Image) -> Self {
        Value::Image(v)
    }
}

/// Builds a row of `(key, Value)` pairs for [`Run::log`](crate::Run::log)
/// from values of mixed types.
///
/// ```
/// let row = wandb::row! { "loss" => 0.25, "epoch" => 3, "phase" => "train" };
/// assert_eq!(row.len(), 3);
/// assert_eq!(row[1], ("epoch".to_string(), wandb::Value::Int(3)));
/// ```
#[macro_export]
macro_rules! row {
    ($($key:expr => $value:expr),* $(,)?) => {
        ::std::vec![$((::std::string::String::from($key), $crate::Value::from($value))),*]
    };
}

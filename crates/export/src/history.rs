//! History rows out of log records.
//!
//! Rows are nearly all of a big log, and both passes read every one, so a
//! row is read through the borrowed view (no allocation per key or value);
//! a record the view refuses (a repeated field) is decoded in full, which
//! reads the same row.
//!
//! wandb-core stores a logged dict as one item per leaf (`nested_key`),
//! media included: `wandb.Image` arrives as `img._type`, `img.path`,
//! `img.sha256`, …. Plain dicts stay `a.b` columns, as W&B's UI shows
//! them; a dict with a `_type` (media, tables, histograms) is put back
//! together as one JSON column, since its leaves only mean something
//! together.

use std::borrow::Cow;

use prost::Message as _;
use wandb_proto::pb::{self, history_item, record::RecordType};
use wandb_proto::tree::Tree;
use wandb_proto::view::{HistoryView, ItemView};

use crate::value::{self, Cell, Kind};

/// A value as read: `value_json` not yet converted (the first pass only
/// needs its kind), or a cell.
#[derive(Debug, Clone, PartialEq)]
pub enum Raw<'a> {
    Text(&'a str),
    Cell(Cell<'a>),
}

impl<'a> Raw<'a> {
    /// The kind [`Raw::cell`] would have, without converting the text.
    pub fn kind(&self) -> Option<Kind> {
        match self {
            Raw::Text("") => None,
            Raw::Text(text) => value::kind_of(text),
            Raw::Cell(cell) => cell.kind(),
        }
    }

    pub fn cell(self) -> Cell<'a> {
        match self {
            Raw::Text("") => Cell::Null,
            Raw::Text(text) => Cell::parse(text),
            Raw::Cell(cell) => cell,
        }
    }
}

/// Calls `f` with each item of the history row in `record` as a column
/// name and a value; returns false (calling nothing) when the record is
/// not a history row.
///
/// The column of a nested key (`{"a": {"b": 1}}`, which wandb-core stores
/// as `nested_key = ["a", "b"]`) is `a.b`, as W&B's UI names it.
pub fn read_row(record: &[u8], mut f: impl FnMut(&str, Raw<'_>)) -> bool {
    match HistoryView::from_record(record) {
        Ok(Some(view)) => {
            let media = view.items.iter().any(|i| match i.nested_key.as_slice() {
                [] => i.key.ends_with("._type"),
                [.., last] => *last == "_type" && i.nested_key.len() > 1,
            });
            let items = view.items.iter().map(|i| (view_key(i), view_raw(i)));
            if media {
                emit_grouped(items, &mut f);
            } else {
                for (key, raw) in items {
                    f(&key, raw);
                }
            }
            true
        }
        Ok(None) => false,
        Err(_) => {
            let Ok(pb::Record {
                record_type: Some(RecordType::History(h)),
                ..
            }) = pb::Record::decode(record)
            else {
                return false;
            };
            let items = h
                .item
                .iter()
                .map(|i| (item_key(&i.key, &i.nested_key), item_raw(i)));
            emit_grouped(items, &mut f);
            true
        }
    }
}

/// Emits a row's items, those under a `<prefix>._type` item gathered into
/// one JSON object column `<prefix>` (the outermost such prefix, for
/// media inside media), keys in sorted order.
fn emit_grouped<'a>(
    items: impl Iterator<Item = (Cow<'a, str>, Raw<'a>)>,
    f: &mut impl FnMut(&str, Raw<'_>),
) {
    let items: Vec<(Cow<'a, str>, Raw<'a>)> = items.collect();
    let prefixes: Vec<String> = items
        .iter()
        .filter_map(|(k, _)| k.strip_suffix("._type"))
        .filter(|p| !p.is_empty())
        .map(str::to_string)
        .collect();
    let outermost = |key: &str| {
        prefixes
            .iter()
            .filter(|p| {
                key.len() > p.len()
                    && key.starts_with(p.as_str())
                    && key.as_bytes()[p.len()] == b'.'
            })
            .min_by_key(|p| p.len())
            .cloned()
    };
    let mut groups: Vec<(String, Vec<(String, Cell<'a>)>)> = Vec::new();
    for (key, raw) in items {
        match outermost(&key) {
            Some(p) => {
                let rest = key[p.len() + 1..].to_string();
                let cell = raw.cell();
                match groups.iter_mut().find(|(g, _)| *g == p) {
                    Some((_, members)) => members.push((rest, cell)),
                    None => groups.push((p, vec![(rest, cell)])),
                }
            }
            None => f(&key, raw),
        }
    }
    for (name, mut members) in groups {
        members.sort_by(|a, b| a.0.cmp(&b.0));
        let mut tree = Tree::default();
        for (path, cell) in members {
            let path: Vec<String> = path.split('.').map(str::to_string).collect();
            tree.insert(&path, cell.to_value());
        }
        f(&name, Raw::Cell(Cell::Json(Cow::Owned(tree.to_json()))));
    }
}

fn view_key<'a>(item: &ItemView<'a>) -> Cow<'a, str> {
    match item.nested_key.as_slice() {
        [] => Cow::Borrowed(item.key),
        [one] => Cow::Borrowed(one),
        many => Cow::Owned(many.join(".")),
    }
}

fn view_raw<'a>(item: &ItemView<'a>) -> Raw<'a> {
    match item.typed {
        Some(typed) => Raw::Cell(Cell::from_typed(typed)),
        None => Raw::Text(item.value_json),
    }
}

/// A key path's column name (summary and config leaves use it too).
pub fn item_key<'a>(key: &'a str, nested: &'a [String]) -> Cow<'a, str> {
    match nested {
        [] => Cow::Borrowed(key),
        [one] => Cow::Borrowed(one),
        many => Cow::Owned(many.join(".")),
    }
}

fn item_raw(item: &pb::HistoryItem) -> Raw<'_> {
    let cell = match &item.value {
        Some(history_item::Value::None(_)) => Cell::Null,
        Some(history_item::Value::Boolean(b)) => Cell::Bool(*b),
        Some(history_item::Value::Integer(i)) => Cell::Int(*i),
        Some(history_item::Value::Number(x)) => Cell::Float(*x),
        Some(history_item::Value::Text(s)) => Cell::Str(Cow::Borrowed(s)),
        Some(history_item::Value::Json(s)) => Cell::parse(s),
        None => return Raw::Text(&item.value_json),
    };
    Raw::Cell(cell)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(items: Vec<pb::HistoryItem>) -> Vec<u8> {
        pb::Record {
            record_type: Some(RecordType::History(pb::HistoryRecord {
                item: items,
                ..Default::default()
            })),
            ..Default::default()
        }
        .encode_to_vec()
    }

    fn item(nested: &[&str], value_json: &str) -> pb::HistoryItem {
        pb::HistoryItem {
            nested_key: nested.iter().map(|s| s.to_string()).collect(),
            value_json: value_json.into(),
            ..Default::default()
        }
    }

    fn row(bytes: &[u8]) -> Option<Vec<(String, Cell<'static>)>> {
        let mut out = Vec::new();
        let is_row = read_row(bytes, |k, raw| {
            assert_eq!(raw.kind(), raw.clone().cell().kind(), "{k}");
            let c = match raw.cell() {
                Cell::Str(s) => Cell::Str(Cow::Owned(s.into_owned())),
                Cell::Json(s) => Cell::Json(Cow::Owned(s.into_owned())),
                Cell::Null => Cell::Null,
                Cell::Bool(b) => Cell::Bool(b),
                Cell::Int(i) => Cell::Int(i),
                Cell::Float(x) => Cell::Float(x),
            };
            out.push((k.to_string(), c))
        });
        is_row.then_some(out)
    }

    #[test]
    fn reads_nested_keys_typed_values_and_the_decoded_fallback() {
        let bytes = record(vec![
            item(&["_step"], "3"),
            item(&["nested", "b", "c"], "2.5"),
            pb::HistoryItem {
                key: "typed".into(),
                value: Some(history_item::Value::Integer(-7)),
                ..Default::default()
            },
            item(&["s"], "\"x\""),
        ]);
        let expected = vec![
            ("_step".to_string(), Cell::Int(3)),
            ("nested.b.c".to_string(), Cell::Float(2.5)),
            ("typed".to_string(), Cell::Int(-7)),
            ("s".to_string(), Cell::Str("x".into())),
        ];
        assert_eq!(row(&bytes).unwrap(), expected);
        // The same history field twice: the view refuses, the decode
        // merges them into one row.
        let mut twice = bytes.clone();
        twice.extend_from_slice(&record(vec![item(&["late"], "1")]));
        let mut merged = expected.clone();
        merged.push(("late".into(), Cell::Int(1)));
        assert_eq!(row(&twice).unwrap(), merged);

        // Media leaves are one JSON column again.
        let media = record(vec![
            item(&["_step"], "4"),
            item(&["img", "path"], "\"media/a.png\""),
            item(&["img", "_type"], "\"image-file\""),
            item(&["img", "size"], "69"),
            item(&["img", "boxes", "_type"], "\"boxes\""),
            item(&["img", "boxes", "n"], "NaN"),
            item(&["plain", "x"], "1"),
        ]);
        assert_eq!(
            row(&media).unwrap(),
            vec![
                ("_step".to_string(), Cell::Int(4)),
                ("plain.x".to_string(), Cell::Int(1)),
                (
                    "img".to_string(),
                    Cell::Json(
                        r#"{"_type":"image-file","boxes":{"_type":"boxes","n":NaN},"path":"media/a.png","size":69}"#
                            .into()
                    )
                ),
            ]
        );

        let summary = pb::Record {
            record_type: Some(RecordType::Summary(Default::default())),
            ..Default::default()
        };
        assert_eq!(row(&summary.encode_to_vec()), None);
    }
}

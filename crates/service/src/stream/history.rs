//! Building history rows from `partial_history` requests.
//!
//! `run.log(...)` sends one item per top-level key; the service accumulates
//! items into a row for the current step and flattens JSON objects into
//! leaf paths (`{"a": {"b": 1}}` → `a.b`), as wandb-core does: a later value
//! for the same leaf overwrites the earlier one within the step.

use indexmap::IndexMap;
use wandb_proto::json::{JsonError, Value};
use wandb_proto::pb;
use wandb_proto::pb::history_item::Value as Typed;

/// A leaf's path: `["loss"]`, `["nested", "deep", "v"]`.
pub type Path = Vec<String>;

/// One pending history row.
#[derive(Debug, Default, Clone)]
pub struct Row {
    leaves: IndexMap<Path, Value>,
}

impl Row {
    pub fn is_empty(&self) -> bool {
        self.leaves.is_empty()
    }

    pub fn len(&self) -> usize {
        self.leaves.len()
    }

    pub fn get(&self, path: &[String]) -> Option<&Value> {
        self.leaves.get(path)
    }

    pub fn contains_key(&self, key: &str) -> bool {
        self.leaves.keys().any(|p| p.len() == 1 && p[0] == key)
    }

    /// Sets a leaf (no flattening).
    pub fn set(&mut self, path: Path, value: Value) {
        self.leaves.insert(path, value);
    }

    pub fn iter(&self) -> impl Iterator<Item = (&Path, &Value)> {
        self.leaves.iter()
    }

    pub fn take(&mut self) -> IndexMap<Path, Value> {
        std::mem::take(&mut self.leaves)
    }

    /// Merges one item of a `partial_history` request.
    pub fn merge_item(&mut self, item: &pb::HistoryItem) -> Result<(), JsonError> {
        let path = item_path(item);
        if path.is_empty() {
            return Ok(());
        }
        self.merge_value(path, item_value(item)?);
        Ok(())
    }

    /// Merges a value at `path`, flattening objects into their leaves (an
    /// empty object contributes nothing).
    pub fn merge_value(&mut self, path: Path, value: Value) {
        match value {
            Value::Object(members) => {
                for (k, v) in members {
                    let mut child = path.clone();
                    child.push(k);
                    self.merge_value(child, v);
                }
            }
            v => self.set(path, v),
        }
    }
}

/// The path an item names: `nested_key`, else `[key]`.
pub fn item_path(item: &pb::HistoryItem) -> Path {
    if !item.nested_key.is_empty() {
        item.nested_key.clone()
    } else if !item.key.is_empty() {
        vec![item.key.clone()]
    } else {
        Vec::new()
    }
}

/// An item's value: the typed form when the SDK sent one (no parsing), else
/// `value_json`.
pub fn item_value(item: &pb::HistoryItem) -> Result<Value, JsonError> {
    Ok(match &item.value {
        Some(Typed::None(_)) => Value::Null,
        Some(Typed::Boolean(b)) => Value::Bool(*b),
        Some(Typed::Integer(i)) => Value::Int(*i),
        Some(Typed::Number(f)) => Value::Float(*f),
        Some(Typed::Text(s)) => Value::Str(s.clone()),
        Some(Typed::Json(s)) => Value::parse(s)?,
        None => Value::parse(&item.value_json)?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn item(key: &str, json: &str) -> pb::HistoryItem {
        pb::HistoryItem {
            key: key.into(),
            value_json: json.into(),
            ..Default::default()
        }
    }

    #[test]
    fn flattens_objects_and_overwrites_leaves() {
        let mut row = Row::default();
        row.merge_item(&item(
            "nested",
            r#"{"inner": 1, "deep": {"v": 2.5}, "empty": {}}"#,
        ))
        .unwrap();
        row.merge_item(&item("loss", "0.8")).unwrap();
        row.merge_item(&item("loss", "0.7")).unwrap();
        let leaves: Vec<(String, String)> = row
            .iter()
            .map(|(p, v)| (p.join("."), v.to_json()))
            .collect();
        assert_eq!(
            leaves,
            vec![
                ("nested.inner".into(), "1".into()),
                ("nested.deep.v".into(), "2.5".into()),
                ("loss".into(), "0.7".into())
            ]
        );
    }

    #[test]
    fn typed_values_win_over_json() {
        let mut it = item("x", "");
        it.value = Some(Typed::Integer(7));
        assert_eq!(item_value(&it).unwrap(), Value::Int(7));
        assert!(item_value(&item("x", "{oops")).is_err());
    }
}

//! Building history rows from `partial_history` requests.
//!
//! `run.log(...)` sends one item per top-level key; the service accumulates
//! items into a row for the current step and flattens JSON objects into
//! leaf paths (`{"a": {"b": 1}}` → `a.b`), as wandb-core does: a later value
//! for the same leaf overwrites the earlier one within the step.
//!
//! This is the hottest path of the service, so values stay the JSON text
//! the SDK sent (a slice of the received bytes; wandb-core re-formats
//! numbers, we keep the same values in the SDK's spelling) and only what
//! the summary needs is parsed: numbers.

use bytes::Bytes;
use prost::encoding::{encode_varint, encoded_len_varint};
use wandb_proto::json::{self, JsonError, Value};
use wandb_proto::view::{ItemView, TypedValue};

use super::keys::{KeyId, Keys};

/// A value's JSON text: a slice of the received record, or our own.
#[derive(Debug, Clone)]
pub enum Text {
    Shared(Bytes),
    Owned(String),
}

impl Text {
    pub fn as_str(&self) -> &str {
        match self {
            // Shared slices are only ever cut from `&str`s (UTF-8 checked).
            Text::Shared(b) => std::str::from_utf8(b).unwrap_or("null"),
            Text::Owned(s) => s,
        }
    }
}

/// What the summary needs to know about a value.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Kind {
    Null,
    Int(i64),
    Float(f64),
    /// Strings, booleans, lists.
    Other,
}

impl Kind {
    pub fn number(self) -> Option<f64> {
        match self {
            Kind::Int(i) => Some(i as f64),
            Kind::Float(f) => Some(f),
            _ => None,
        }
    }
}

/// One leaf of a row.
#[derive(Debug, Clone)]
pub struct Leaf {
    pub text: Text,
    pub kind: Kind,
}

impl Leaf {
    pub fn int(i: i64) -> Self {
        Self {
            text: Text::Owned(i.to_string()),
            kind: Kind::Int(i),
        }
    }

    pub fn float(f: f64) -> Self {
        let mut s = String::new();
        json::write_float(f, &mut s);
        Self {
            text: Text::Owned(s),
            kind: Kind::Float(f),
        }
    }

    /// From a parsed value (no objects: those are flattened first).
    pub fn from_value(v: &Value) -> Self {
        let kind = match v {
            Value::Null => Kind::Null,
            Value::Int(i) => Kind::Int(*i),
            Value::Float(f) => Kind::Float(*f),
            _ => Kind::Other,
        };
        Self {
            text: Text::Owned(v.to_json()),
            kind,
        }
    }
}

/// Classifies JSON text that is not an object, validating it. Integers
/// beyond `i64` become floats, as in wandb-core.
fn scalar(text: &str, shared: impl FnOnce() -> Text) -> Result<Leaf, JsonError> {
    let bytes = text.as_bytes();
    let kind = match bytes.first() {
        Some(b'-' | b'0'..=b'9') if text != "-Infinity" => {
            let integer = bytes
                .iter()
                .skip(usize::from(bytes[0] == b'-'))
                .all(u8::is_ascii_digit);
            if integer && let Ok(i) = text.parse::<i64>() {
                Kind::Int(i)
            } else if let Ok(f) = text.parse::<f64>() {
                if integer {
                    // Too big for i64: written as the float it becomes.
                    return Ok(Leaf::float(f));
                }
                Kind::Float(f)
            } else {
                return Err(JsonError {
                    offset: 0,
                    reason: "invalid number",
                });
            }
        }
        _ => match text {
            "null" => Kind::Null,
            "NaN" => Kind::Float(f64::NAN),
            "Infinity" => Kind::Float(f64::INFINITY),
            "-Infinity" => Kind::Float(f64::NEG_INFINITY),
            "true" | "false" => Kind::Other,
            _ => {
                let v = Value::parse(text)?;
                if matches!(v, Value::Object(_)) {
                    unreachable!("objects are flattened by the caller");
                }
                Kind::Other
            }
        },
    };
    Ok(Leaf {
        text: shared(),
        kind,
    })
}

/// The pending row: leaves by key, in insertion order.
#[derive(Debug, Default)]
pub struct Row {
    entries: Vec<(KeyId, Leaf)>,
    /// `KeyId` → position in `entries` + 1 (0: absent).
    pos: Vec<u32>,
}

impl Row {
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn contains(&self, id: KeyId) -> bool {
        self.pos.get(id as usize).is_some_and(|p| *p != 0)
    }

    pub fn set(&mut self, id: KeyId, leaf: Leaf) {
        let i = id as usize;
        if self.pos.len() <= i {
            self.pos.resize(i + 1, 0);
        }
        match self.pos[i] {
            0 => {
                self.entries.push((id, leaf));
                self.pos[i] = self.entries.len() as u32;
            }
            p => self.entries[p as usize - 1].1 = leaf,
        }
    }

    pub fn entries(&self) -> &[(KeyId, Leaf)] {
        &self.entries
    }

    pub fn clear(&mut self) {
        for (id, _) in &self.entries {
            self.pos[*id as usize] = 0;
        }
        self.entries.clear();
    }

    /// Merges one item of a `partial_history` request; `raw` holds the bytes
    /// the item's strings were read from (scalars are kept as slices of it).
    pub fn merge_item(
        &mut self,
        keys: &mut Keys,
        item: &ItemView<'_>,
        raw: &Bytes,
    ) -> Result<(), JsonError> {
        let id_of = |keys: &mut Keys| {
            if item.nested_key.is_empty() {
                (!item.key.is_empty()).then(|| keys.top(item.key))
            } else {
                Some(keys.path_id(&item.nested_key))
            }
        };
        let typed = match item.typed {
            // The typed form is authoritative when present, as in wandb-core.
            Some(TypedValue::Json(text)) => Some(Value::parse(text)?),
            Some(t) if item.value_json.is_empty() => Some(match t {
                TypedValue::None => Value::Null,
                TypedValue::Bool(b) => Value::Bool(b),
                TypedValue::Int(i) => Value::Int(i),
                TypedValue::Number(f) => Value::Float(f),
                TypedValue::Text(s) => Value::Str(s.to_string()),
                TypedValue::Json(_) => unreachable!("handled above"),
            }),
            _ => None,
        };
        if let Some(value) = typed {
            let Some(id) = id_of(keys) else { return Ok(()) };
            let path = keys.path(id).to_vec();
            self.merge_value(keys, path, value);
            return Ok(());
        }
        let text = item.value_json;
        if text.starts_with('{') {
            let value = Value::parse(text)?;
            let Some(id) = id_of(keys) else { return Ok(()) };
            let path = keys.path(id).to_vec();
            self.merge_value(keys, path, value);
            return Ok(());
        }
        let leaf = scalar(text, || Text::Shared(raw.slice_ref(text.as_bytes())))?;
        if let Some(id) = id_of(keys) {
            self.set(id, leaf);
        }
        Ok(())
    }

    /// Merges a parsed value at `path`, flattening objects into their leaves
    /// (an empty object contributes nothing).
    pub fn merge_value(&mut self, keys: &mut Keys, path: Vec<String>, value: Value) {
        match value {
            Value::Object(members) => {
                for (k, v) in members {
                    let mut child = path.clone();
                    child.push(k);
                    self.merge_value(keys, child, v);
                }
            }
            v => {
                let id = keys.path_id(&path);
                self.set(id, Leaf::from_value(&v));
            }
        }
    }
}

/// Appends an encoded `Record{history{item[]{nested_key, value_json}, step}}`
/// for `row` to `out`, built directly from the keys' pre-encoded paths and
/// the values' text.
pub fn encode_history_record(keys: &Keys, row: &Row, step: i64, out: &mut Vec<u8>) {
    let item_len = |id: KeyId, leaf: &Leaf| {
        let text = leaf.text.as_str().len();
        keys.info(id).nested_key_field.len() + 2 + encoded_len_varint(text as u64) + text
    };
    let step_len = if step == 0 {
        0
    } else {
        1 + encoded_len_varint(step as u64)
    };
    let mut history_len = 1 + encoded_len_varint(step_len as u64) + step_len;
    for (id, leaf) in row.entries() {
        let n = item_len(*id, leaf);
        history_len += 1 + encoded_len_varint(n as u64) + n;
    }
    out.reserve(1 + encoded_len_varint(history_len as u64) + history_len);
    out.push(0x12); // Record.history (2)
    encode_varint(history_len as u64, out);
    for (id, leaf) in row.entries() {
        out.push(0x0a); // HistoryRecord.item (1)
        encode_varint(item_len(*id, leaf) as u64, out);
        out.extend_from_slice(&keys.info(*id).nested_key_field);
        let text = leaf.text.as_str();
        out.extend_from_slice(&[0x82, 0x01]); // HistoryItem.value_json (16)
        encode_varint(text.len() as u64, out);
        out.extend_from_slice(text.as_bytes());
    }
    out.push(0x12); // HistoryRecord.step (2)
    encode_varint(step_len as u64, out);
    if step != 0 {
        out.push(0x08); // HistoryStep.num (1)
        encode_varint(step as u64, out);
    }
}

#[cfg(test)]
mod tests {
    use prost::Message;
    use wandb_proto::pb;
    use wandb_proto::view::PartialHistoryView;

    use super::*;

    fn request(items: Vec<pb::HistoryItem>) -> Bytes {
        Bytes::from(
            pb::Record {
                record_type: Some(pb::record::RecordType::Request(pb::Request {
                    request_type: Some(pb::request::RequestType::PartialHistory(
                        pb::PartialHistoryRequest {
                            item: items,
                            ..Default::default()
                        },
                    )),
                })),
                ..Default::default()
            }
            .encode_to_vec(),
        )
    }

    fn item(key: &str, json: &str) -> pb::HistoryItem {
        pb::HistoryItem {
            key: key.into(),
            value_json: json.into(),
            ..Default::default()
        }
    }

    fn merge(row: &mut Row, keys: &mut Keys, raw: Bytes) -> Result<(), JsonError> {
        let view = PartialHistoryView::from_record(&raw).unwrap().unwrap();
        for it in &view.items {
            row.merge_item(keys, it, &raw)?;
        }
        Ok(())
    }

    #[test]
    fn flattens_objects_overwrites_leaves_and_encodes_like_prost() {
        let mut keys = Keys::default();
        let mut row = Row::default();
        merge(
            &mut row,
            &mut keys,
            request(vec![
                item("nested", r#"{"inner": 1, "deep": {"v": 2.5}, "empty": {}}"#),
                item("loss", "0.8"),
                item("big", "1180591620717411303424"),
            ]),
        )
        .unwrap();
        merge(
            &mut row,
            &mut keys,
            request(vec![item("loss", "0.7"), item("s", "\"x\"")]),
        )
        .unwrap();
        assert!(merge(&mut row, &mut keys, request(vec![item("bad", "{oops")])).is_err());
        let leaves: Vec<(String, String)> = row
            .entries()
            .iter()
            .map(|(id, l)| (keys.info(*id).dotted.clone(), l.text.as_str().to_string()))
            .collect();
        assert_eq!(
            leaves,
            vec![
                ("nested.inner".into(), "1".into()),
                ("nested.deep.v".into(), "2.5".into()),
                ("loss".into(), "0.7".into()),
                ("big".into(), "1.1805916207174113e+21".into()),
                ("s".into(), "\"x\"".into()),
            ]
        );

        for step in [0, 7] {
            let mut out = Vec::new();
            encode_history_record(&keys, &row, step, &mut out);
            let expected = pb::Record {
                record_type: Some(pb::record::RecordType::History(pb::HistoryRecord {
                    item: leaves
                        .iter()
                        .map(|(k, v)| pb::HistoryItem {
                            nested_key: k.split('.').map(String::from).collect(),
                            value_json: v.clone(),
                            ..Default::default()
                        })
                        .collect(),
                    step: Some(pb::HistoryStep { num: step }),
                    ..Default::default()
                })),
                ..Default::default()
            };
            assert_eq!(out, expected.encode_to_vec(), "step {step}");
        }
        row.clear();
        assert!(row.is_empty() && !row.contains(0));
    }

    #[test]
    fn scalars_are_classified_and_validated() {
        let k = |t: &str| scalar(t, || Text::Owned(t.to_string())).map(|l| l.kind);
        assert_eq!(k("3").unwrap(), Kind::Int(3));
        assert_eq!(k("-2.5e-3").unwrap(), Kind::Float(-0.0025));
        assert!(matches!(k("NaN").unwrap(), Kind::Float(f) if f.is_nan()));
        assert_eq!(k("-Infinity").unwrap(), Kind::Float(f64::NEG_INFINITY));
        assert_eq!(k("null").unwrap(), Kind::Null);
        assert_eq!(k("[1, 2]").unwrap(), Kind::Other);
        for bad in ["1x", "\"open", "", "tru"] {
            assert!(k(bad).is_err(), "{bad:?}");
        }
    }
}

//! Building history rows from `partial_history` requests.
//!
//! `run.log(...)` sends one item per top-level key; the service accumulates
//! items into a row for the current step and flattens JSON objects into
//! leaf paths (`{"a": {"b": 1}}` → `a.b`), as wandb-core does: a later value
//! for the same leaf overwrites the earlier one within the step.
//!
//! This is the hottest path of the service, so a row keeps its values'
//! JSON text in one buffer of its own (the SDK's spelling: wandb-core
//! re-formats numbers, we keep the same values), reused row after row, and
//! only what the summary needs is parsed: numbers.

use bytes::{BufMut, BytesMut};
use prost::encoding::{encode_varint, encoded_len_varint};
use wandb_proto::json::{self, JsonError, Value};
use wandb_proto::view::{ItemView, TypedValue};

use crate::runstate::keys::{KeyId, Keys};
use crate::runstate::summary::Kind;

/// One leaf of a row: where its JSON text is in the row's buffer.
#[derive(Debug, Clone, Copy)]
pub struct Leaf {
    start: u32,
    len: u32,
    pub kind: Kind,
}

/// Classifies JSON text that is not an object, validating it. Integers
/// beyond `i64` become floats, as in wandb-core: then the text to write
/// instead is returned too.
fn classify(text: &str) -> Result<(Kind, Option<String>), JsonError> {
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
                    let mut s = String::new();
                    json::write_float(f, &mut s);
                    return Ok((Kind::Float(f), Some(s)));
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
                debug_assert!(
                    !matches!(v, Value::Object(_)),
                    "objects are flattened by the caller"
                );
                Kind::Other
            }
        },
    };
    Ok((kind, None))
}

/// The pending row: leaves by key, in insertion order.
#[derive(Debug, Default)]
pub struct Row {
    entries: Vec<(KeyId, Leaf)>,
    /// `KeyId` → position in `entries` + 1 (0: absent).
    pos: Vec<u32>,
    /// The values' JSON text.
    text: Vec<u8>,
    /// For formatting numbers.
    scratch: String,
}

impl Row {
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    pub fn contains(&self, id: KeyId) -> bool {
        self.pos.get(id as usize).is_some_and(|p| *p != 0)
    }

    /// A leaf's JSON text.
    pub fn text(&self, leaf: &Leaf) -> &[u8] {
        &self.text[leaf.start as usize..(leaf.start + leaf.len) as usize]
    }

    /// Sets a leaf (a later value for the same key replaces the earlier).
    pub fn set_text(&mut self, id: KeyId, text: &[u8], kind: Kind) {
        let leaf = Leaf {
            start: self.text.len() as u32,
            len: text.len() as u32,
            kind,
        };
        self.text.extend_from_slice(text);
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

    pub fn set_int(&mut self, id: KeyId, i: i64) {
        let mut scratch = std::mem::take(&mut self.scratch);
        scratch.clear();
        use std::fmt::Write as _;
        let _ = write!(scratch, "{i}");
        self.set_text(id, scratch.as_bytes(), Kind::Int(i));
        self.scratch = scratch;
    }

    pub fn set_float(&mut self, id: KeyId, f: f64) {
        let mut scratch = std::mem::take(&mut self.scratch);
        scratch.clear();
        json::write_float(f, &mut scratch);
        self.set_text(id, scratch.as_bytes(), Kind::Float(f));
        self.scratch = scratch;
    }

    /// Sets a parsed value (objects must be flattened first).
    pub fn set_value(&mut self, id: KeyId, v: &Value) {
        self.set_text(id, v.to_json().as_bytes(), Kind::of(v));
    }

    pub fn entries(&self) -> &[(KeyId, Leaf)] {
        &self.entries
    }

    pub fn clear(&mut self) {
        for (id, _) in &self.entries {
            self.pos[*id as usize] = 0;
        }
        self.entries.clear();
        self.text.clear();
    }

    /// Merges one item of a `partial_history` request.
    pub fn merge_item(&mut self, keys: &mut Keys, item: &ItemView<'_>) -> Result<(), JsonError> {
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
        let text = item.value_json;
        let value = match typed {
            Some(v) => v,
            None if text.starts_with('{') => Value::parse(text)?,
            None => {
                let (kind, replacement) = classify(text)?;
                if let Some(id) = id_of(keys) {
                    let text = replacement.as_deref().unwrap_or(text);
                    self.set_text(id, text.as_bytes(), kind);
                }
                return Ok(());
            }
        };
        let Some(id) = id_of(keys) else { return Ok(()) };
        let path = keys.path(id).to_vec();
        self.merge_value(keys, path, value);
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
                self.set_value(id, &v);
            }
        }
    }
}

/// Appends an encoded `Record{history{item[]{nested_key, value_json}, step}}`
/// for `row` to `out`, built directly from the keys' pre-encoded paths and
/// the values' text.
pub fn encode_history_record(keys: &Keys, row: &Row, step: i64, out: &mut BytesMut) {
    let item_len = |id: KeyId, leaf: &Leaf| {
        let text = leaf.len as usize;
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
    out.put_u8(0x12); // Record.history (2)
    encode_varint(history_len as u64, out);
    for (id, leaf) in row.entries() {
        out.put_u8(0x0a); // HistoryRecord.item (1)
        encode_varint(item_len(*id, leaf) as u64, out);
        out.extend_from_slice(&keys.info(*id).nested_key_field);
        let text = row.text(leaf);
        out.extend_from_slice(&[0x82, 0x01]); // HistoryItem.value_json (16)
        encode_varint(text.len() as u64, out);
        out.extend_from_slice(text);
    }
    out.put_u8(0x12); // HistoryRecord.step (2)
    encode_varint(step_len as u64, out);
    if step != 0 {
        out.put_u8(0x08); // HistoryStep.num (1)
        encode_varint(step as u64, out);
    }
}

#[cfg(test)]
mod tests {
    use prost::Message;
    use wandb_proto::pb;
    use wandb_proto::view::PartialHistoryView;

    use super::*;

    fn request(items: Vec<pb::HistoryItem>) -> Vec<u8> {
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
        .encode_to_vec()
    }

    fn item(key: &str, json: &str) -> pb::HistoryItem {
        pb::HistoryItem {
            key: key.into(),
            value_json: json.into(),
            ..Default::default()
        }
    }

    fn merge(row: &mut Row, keys: &mut Keys, raw: Vec<u8>) -> Result<(), JsonError> {
        let view = PartialHistoryView::from_record(&raw).unwrap().unwrap();
        for it in &view.items {
            row.merge_item(keys, it)?;
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
            .map(|(id, l)| {
                (
                    keys.info(*id).dotted.clone(),
                    String::from_utf8(row.text(l).to_vec()).unwrap(),
                )
            })
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
            let mut out = BytesMut::new();
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
            assert_eq!(out[..], expected.encode_to_vec()[..], "step {step}");
        }
        row.clear();
        assert!(row.is_empty() && !row.contains(0));
    }

    #[test]
    fn scalars_are_classified_and_validated() {
        let k = |t: &str| classify(t).map(|(kind, _)| kind);
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

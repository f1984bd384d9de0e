//! Zero-copy views of the messages on the hottest path.
//!
//! Every `run.log()` arrives as a `Record{request{partial_history}}`, and
//! leaves the log, online, as a `Record{history}` read back. A full decode
//! allocates a string per key and per value, twenty-odd allocations for a
//! row of ten scalars; these views read the same fields straight out of the
//! bytes instead. Anything unexpected (a field of the wrong
//! wire type, a truncated message) is a [`WireError`], and callers fall back
//! to the full decode, which reports it properly.

use crate::wire::{Field, WireError, fields};

/// Field numbers used below (see `schema/internal.proto`).
mod num {
    pub const RECORD_HISTORY: u32 = 2;
    pub const HISTORY_ITEM: u32 = 1;
    pub const RECORD_REQUEST: u32 = 100;
    pub const REQUEST_PARTIAL_HISTORY: u32 = 10;
    pub const PARTIAL_ITEM: u32 = 1;
    pub const PARTIAL_STEP: u32 = 2;
    pub const PARTIAL_ACTION: u32 = 3;
    pub const STEP_NUM: u32 = 1;
    pub const ACTION_FLUSH: u32 = 1;
    pub const ITEM_KEY: u32 = 1;
    pub const ITEM_NESTED_KEY: u32 = 2;
    pub const ITEM_NONE: u32 = 3;
    pub const ITEM_BOOLEAN: u32 = 4;
    pub const ITEM_INTEGER: u32 = 5;
    pub const ITEM_NUMBER: u32 = 6;
    pub const ITEM_TEXT: u32 = 7;
    pub const ITEM_JSON: u32 = 8;
    pub const ITEM_VALUE_JSON: u32 = 16;
}

const VARINT: u8 = 0;
const FIXED64: u8 = 1;
const LEN: u8 = 2;

fn bad(reason: &'static str) -> WireError {
    WireError { offset: 0, reason }
}

fn len_payload<'a>(msg: &'a [u8], f: &Field) -> Result<&'a [u8], WireError> {
    if f.wire_type != LEN {
        return Err(bad("expected a length-delimited field"));
    }
    Ok(&msg[f.payload(msg).ok_or(bad("bad length"))?])
}

fn str_field<'a>(msg: &'a [u8], f: &Field) -> Result<&'a str, WireError> {
    std::str::from_utf8(len_payload(msg, f)?).map_err(|_| bad("string is not UTF-8"))
}

fn varint_field(msg: &[u8], f: &Field) -> Result<u64, WireError> {
    if f.wire_type != VARINT {
        return Err(bad("expected a varint field"));
    }
    let mut pos = f.value;
    crate::wire::read_varint(msg, &mut pos)
}

/// The typed value of a history item (`x_history_value_encoding` with
/// `typed`), when the SDK sent one.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum TypedValue<'a> {
    None,
    Bool(bool),
    Int(i64),
    Number(f64),
    Text(&'a str),
    Json(&'a str),
}

/// One item of a `partial_history` request, borrowed from the record bytes.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ItemView<'a> {
    pub key: &'a str,
    pub nested_key: Vec<&'a str>,
    pub typed: Option<TypedValue<'a>>,
    pub value_json: &'a str,
}

impl<'a> ItemView<'a> {
    /// The item every SDK sends for a logged value: `key` (field 1), then
    /// `value_json` (field 16), nothing else. Measured need: the general
    /// field loop was a fifth of the service's time for 10-scalar rows.
    /// Anything else (or anything odd) takes the general path, which says
    /// what is wrong.
    fn parse_common(msg: &'a [u8]) -> Option<Self> {
        let mut pos = 0;
        let mut string = |tag: &[u8]| -> Option<&'a str> {
            if !msg.get(pos..)?.starts_with(tag) {
                return None;
            }
            pos += tag.len();
            let len = usize::try_from(crate::wire::read_varint(msg, &mut pos).ok()?).ok()?;
            let bytes = msg.get(pos..pos.checked_add(len)?)?;
            pos += len;
            std::str::from_utf8(bytes).ok()
        };
        let key = string(&[0x0a])?;
        let value_json = string(&[0x82, 0x01])?;
        (pos == msg.len()).then_some(ItemView {
            key,
            value_json,
            ..Default::default()
        })
    }

    fn parse(msg: &'a [u8]) -> Result<Self, WireError> {
        match Self::parse_common(msg) {
            Some(item) => Ok(item),
            None => Self::parse_fields(msg),
        }
    }

    fn parse_fields(msg: &'a [u8]) -> Result<Self, WireError> {
        let mut item = ItemView::default();
        for f in fields(msg) {
            let f = f?;
            match f.number {
                num::ITEM_KEY => item.key = str_field(msg, &f)?,
                num::ITEM_NESTED_KEY => item.nested_key.push(str_field(msg, &f)?),
                num::ITEM_NONE => {
                    varint_field(msg, &f)?;
                    item.typed = Some(TypedValue::None);
                }
                num::ITEM_BOOLEAN => {
                    item.typed = Some(TypedValue::Bool(varint_field(msg, &f)? != 0))
                }
                num::ITEM_INTEGER => {
                    let z = varint_field(msg, &f)?;
                    item.typed = Some(TypedValue::Int(((z >> 1) as i64) ^ -((z & 1) as i64)));
                }
                num::ITEM_NUMBER => {
                    if f.wire_type != FIXED64 {
                        return Err(bad("number is not a double"));
                    }
                    let bytes: [u8; 8] = msg[f.value..f.value + 8]
                        .try_into()
                        .expect("fixed64 is 8 bytes");
                    item.typed = Some(TypedValue::Number(f64::from_le_bytes(bytes)));
                }
                num::ITEM_TEXT => item.typed = Some(TypedValue::Text(str_field(msg, &f)?)),
                num::ITEM_JSON => item.typed = Some(TypedValue::Json(str_field(msg, &f)?)),
                num::ITEM_VALUE_JSON => item.value_json = str_field(msg, &f)?,
                _ => {}
            }
        }
        Ok(item)
    }
}

/// A `partial_history` request, borrowed from the record bytes.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct PartialHistoryView<'a> {
    pub items: Vec<ItemView<'a>>,
    /// `step.num` when a step was given (`step=0` is `Some(0)`).
    pub step: Option<i64>,
    /// `action.flush` when `commit=` was given.
    pub flush: Option<bool>,
}

impl<'a> PartialHistoryView<'a> {
    /// The request inside an encoded `Record`, or `None` when the record is
    /// something else.
    pub fn from_record(record: &'a [u8]) -> Result<Option<Self>, WireError> {
        let Some(request) = sub_message(record, num::RECORD_REQUEST)? else {
            return Ok(None);
        };
        let Some(partial) = sub_message(request, num::REQUEST_PARTIAL_HISTORY)? else {
            return Ok(None);
        };
        Self::parse(partial).map(Some)
    }

    fn parse(msg: &'a [u8]) -> Result<Self, WireError> {
        let mut view = PartialHistoryView {
            // A typical row's items, without growing the vector thrice.
            items: Vec::with_capacity(16),
            ..Default::default()
        };
        for f in fields(msg) {
            let f = f?;
            match f.number {
                num::PARTIAL_ITEM => view.items.push(ItemView::parse(len_payload(msg, &f)?)?),
                num::PARTIAL_STEP => {
                    let step = len_payload(msg, &f)?;
                    // A repeated `step` merges: an absent `num` keeps
                    // the earlier one, as the full decode does.
                    let mut n = view.step.unwrap_or(0);
                    for g in fields(step) {
                        let g = g?;
                        if g.number == num::STEP_NUM {
                            n = varint_field(step, &g)? as i64;
                        }
                    }
                    view.step = Some(n);
                }
                num::PARTIAL_ACTION => {
                    let action = len_payload(msg, &f)?;
                    let mut flush = view.flush.unwrap_or(false);
                    for g in fields(action) {
                        let g = g?;
                        if g.number == num::ACTION_FLUSH {
                            flush = varint_field(action, &g)? != 0;
                        }
                    }
                    view.flush = Some(flush);
                }
                _ => {}
            }
        }
        Ok(view)
    }
}

/// The items of a history record (`Record.history`), borrowed: a row as
/// the log holds it. `HistoryItem` numbers its fields as
/// `partial_history`'s items do, so the same [`ItemView`] reads them.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct HistoryView<'a> {
    pub items: Vec<ItemView<'a>>,
}

impl<'a> HistoryView<'a> {
    /// The row inside an encoded `Record`, or `None` when the record is
    /// something else.
    pub fn from_record(record: &'a [u8]) -> Result<Option<Self>, WireError> {
        let Some(history) = sub_message(record, num::RECORD_HISTORY)? else {
            return Ok(None);
        };
        let mut view = HistoryView::default();
        for f in fields(history) {
            let f = f?;
            if f.number == num::HISTORY_ITEM {
                view.items.push(ItemView::parse(len_payload(history, &f)?)?);
            }
        }
        Ok(Some(view))
    }
}

/// The payload of a length-delimited field. A message field that occurs
/// twice is merged by the full decode (its occurrences concatenated), which
/// a borrowed view cannot be: that is an error, and callers fall back.
fn sub_message(msg: &[u8], number: u32) -> Result<Option<&[u8]>, WireError> {
    let mut found = None;
    for f in fields(msg) {
        let f = f?;
        if f.number == number {
            if found.is_some() {
                return Err(bad("sub-message repeated; the full decode merges it"));
            }
            found = Some(len_payload(msg, &f)?);
        }
    }
    Ok(found)
}

/// `_info.stream_id` of an encoded `Record` (or any message with `_info` at
/// field 200), borrowed. Repeated `_info` fields merge as in the full
/// decode: the last `stream_id` of any of them wins.
pub fn stream_id(record: &[u8]) -> Option<&str> {
    let mut id = None;
    let mut has_info = false;
    for f in fields(record) {
        let f = f.ok()?;
        if f.number != 200 {
            continue;
        }
        let info = len_payload(record, &f).ok()?;
        has_info = true;
        for g in fields(info) {
            let g = g.ok()?;
            if g.number == 1 {
                id = Some(str_field(info, &g).ok()?);
            }
        }
    }
    has_info.then(|| id.unwrap_or(""))
}

#[cfg(test)]
mod tests {
    use prost::Message;

    use super::*;
    use crate::pb;
    use crate::pb::history_item::Value as Typed;

    fn record(req: pb::PartialHistoryRequest) -> Vec<u8> {
        pb::Record {
            record_type: Some(pb::record::RecordType::Request(pb::Request {
                request_type: Some(pb::request::RequestType::PartialHistory(req)),
            })),
            info: Some(pb::RecordInfo {
                stream_id: "run9".into(),
                ..Default::default()
            }),
            ..Default::default()
        }
        .encode_to_vec()
    }

    /// An item named by `path` (a plain key when it has one part).
    fn item(path: &[&str], value_json: &str) -> pb::HistoryItem {
        let (key, nested_key) = match path {
            [key] => (key.to_string(), Vec::new()),
            _ => (String::new(), path.iter().map(|p| p.to_string()).collect()),
        };
        pb::HistoryItem {
            key,
            nested_key,
            value_json: value_json.into(),
            ..Default::default()
        }
    }

    #[test]
    fn history_rows_read_as_prost_wrote_them() {
        let record = pb::Record {
            record_type: Some(pb::record::RecordType::History(pb::HistoryRecord {
                item: vec![item(&["loss"], "0.5"), item(&["a", "b"], "NaN")],
                ..Default::default()
            })),
            num: 7,
            ..Default::default()
        }
        .encode_to_vec();
        let view = HistoryView::from_record(&record).unwrap().unwrap();
        assert_eq!(view.items.len(), 2);
        assert_eq!(
            (view.items[0].key, view.items[0].value_json),
            ("loss", "0.5")
        );
        assert_eq!(view.items[1].nested_key, ["a", "b"]);
        assert_eq!(view.items[1].value_json, "NaN");
        let other = pb::Record {
            record_type: Some(pb::record::RecordType::Exit(Default::default())),
            ..Default::default()
        }
        .encode_to_vec();
        assert_eq!(HistoryView::from_record(&other).unwrap(), None);
    }

    #[test]
    fn reads_what_prost_wrote() {
        let bytes = record(pb::PartialHistoryRequest {
            item: vec![
                item(&["loss"], "0.5"),
                pb::HistoryItem {
                    value: Some(Typed::Integer(-3)),
                    ..item(&["a", "b"], "-3")
                },
                pb::HistoryItem {
                    key: "x".into(),
                    value: Some(Typed::Number(2.5)),
                    ..Default::default()
                },
            ],
            step: Some(pb::HistoryStep { num: 0 }),
            action: Some(pb::HistoryAction { flush: false }),
            ..Default::default()
        });
        let view = PartialHistoryView::from_record(&bytes).unwrap().unwrap();
        assert_eq!(view.step, Some(0));
        assert_eq!(view.flush, Some(false));
        assert_eq!(view.items[0].key, "loss");
        assert_eq!(view.items[0].value_json, "0.5");
        assert_eq!(view.items[1].nested_key, vec!["a", "b"]);
        assert_eq!(view.items[1].typed, Some(TypedValue::Int(-3)));
        assert_eq!(view.items[2].typed, Some(TypedValue::Number(2.5)));
        assert_eq!(stream_id(&bytes), Some("run9"));

        let plain = record(pb::PartialHistoryRequest::default());
        let view = PartialHistoryView::from_record(&plain).unwrap().unwrap();
        assert_eq!((view.step, view.flush, view.items.len()), (None, None, 0));

        let other = pb::Record::default().encode_to_vec();
        assert_eq!(PartialHistoryView::from_record(&other).unwrap(), None);
        assert_eq!(stream_id(&other), None);
    }

    proptest::proptest! {
        #[test]
        fn the_common_item_reads_as_the_general_path_reads_it(
            key in ".{0,40}",
            value in ".{0,300}",
            tail in proptest::collection::vec(proptest::num::u8::ANY, 0..4),
        ) {
            let mut bytes = item(&[key.as_str()], &value).encode_to_vec();
            // `key` then `value_json`, as prost writes them: the fast path.
            let fast = ItemView::parse_common(&bytes);
            proptest::prop_assert!(key.is_empty() || value.is_empty() || fast.is_some());
            if let Some(fast) = fast {
                proptest::prop_assert_eq!(Ok(fast), ItemView::parse_fields(&bytes));
            }
            // Whatever follows, the two agree wherever the fast one reads.
            bytes.extend_from_slice(&tail);
            if let Some(fast) = ItemView::parse_common(&bytes) {
                proptest::prop_assert_eq!(Ok(fast), ItemView::parse_fields(&bytes));
            }
        }

        #[test]
        fn random_items_read_alike(bytes in proptest::collection::vec(proptest::num::u8::ANY, 0..64)) {
            if let Some(fast) = ItemView::parse_common(&bytes) {
                proptest::prop_assert_eq!(Ok(fast), ItemView::parse_fields(&bytes));
            }
        }

        #[test]
        fn random_bytes_never_panic(bytes in proptest::collection::vec(proptest::num::u8::ANY, 0..128)) {
            let _ = PartialHistoryView::from_record(&bytes);
            let _ = stream_id(&bytes);
        }
    }
}

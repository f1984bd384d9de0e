//! A logged row, encoded straight into its frame.
//!
//! Why not prost messages: `Run::log` is the SDK's hot path, and building a
//! `HistoryItem` per value (two `String`s each), the request around them,
//! and then encoding it all was over half of `log()`'s time for 10-scalar
//! rows (perf: allocation, copies, drops). This writes the bytes prost
//! would write for the same `ServerRequest` (a test holds it to that) from
//! borrowed keys into one buffer: one allocation per row (the frame).

use prost::encoding::{WireType, encode_key, encode_varint, encoded_len_varint};
use wandb_proto::frame::{HEADER_LEN, MAGIC};

use crate::value::Value;

/// Room kept in front of the items for the frame header and the envelopes
/// around them (written once their lengths are known): the frame header and
/// three (tag, length) pairs, lengths up to 2^35.
const HEAD_ROOM: usize = HEADER_LEN + 3 * (2 + 5);

// Field numbers, from the wandb protocol.
const SERVER_REQUEST_RECORD_PUBLISH: u32 = 1;
const RECORD_REQUEST: u32 = 100;
const RECORD_CONTROL: u32 = 16;
const RECORD_INFO: u32 = 200;
const CONTROL_LOCAL: u32 = 2;
const INFO_STREAM_ID: u32 = 1;
const REQUEST_PARTIAL_HISTORY: u32 = 10;
const PARTIAL_ITEM: u32 = 1;
const PARTIAL_STEP: u32 = 2;
const PARTIAL_ACTION: u32 = 3;
const ITEM_KEY: u32 = 1;
const ITEM_VALUE_JSON: u32 = 16;
const STEP_NUM: u32 = 1;
const ACTION_FLUSH: u32 = 1;

thread_local! {
    /// One value's JSON text, reused row after row on each logging thread
    /// (only `Value::write_json` runs while it is borrowed).
    static JSON: std::cell::RefCell<String> = const { std::cell::RefCell::new(String::new()) };
}

/// A `partial_history` request being written: items first, then
/// [`finish`](Self::finish) for the frame.
pub(crate) struct RowFrame {
    buf: Vec<u8>,
}

impl RowFrame {
    pub fn new() -> Self {
        let mut buf = Vec::with_capacity(512);
        buf.resize(HEAD_ROOM, 0);
        Self { buf }
    }

    /// Adds `key = value` (a value without media).
    pub fn item(&mut self, key: &str, value: &Value) {
        JSON.with_borrow_mut(|json| {
            json.clear();
            value.write_json(json);
            let body = field_len(ITEM_KEY, key.len()) + field_len(ITEM_VALUE_JSON, json.len());
            encode_key(PARTIAL_ITEM, WireType::LengthDelimited, &mut self.buf);
            encode_varint(body as u64, &mut self.buf);
            string_field(ITEM_KEY, key, &mut self.buf);
            string_field(ITEM_VALUE_JSON, json, &mut self.buf);
        });
    }

    /// The framed `ServerRequest` (`W`, length, message): a published,
    /// local record of `stream_id` holding the items, `step` and `flush`.
    pub fn finish(mut self, stream_id: &str, step: Option<u64>, flush: Option<bool>) -> Vec<u8> {
        if let Some(step) = step {
            let num = step as i64;
            let body = if num == 0 {
                0
            } else {
                1 + encoded_len_varint(num as u64)
            };
            encode_key(PARTIAL_STEP, WireType::LengthDelimited, &mut self.buf);
            encode_varint(body as u64, &mut self.buf);
            if num != 0 {
                encode_key(STEP_NUM, WireType::Varint, &mut self.buf);
                encode_varint(num as u64, &mut self.buf);
            }
        }
        if let Some(flush) = flush {
            encode_key(PARTIAL_ACTION, WireType::LengthDelimited, &mut self.buf);
            encode_varint(if flush { 2 } else { 0 }, &mut self.buf);
            if flush {
                encode_key(ACTION_FLUSH, WireType::Varint, &mut self.buf);
                encode_varint(1, &mut self.buf);
            }
        }
        let partial = self.buf.len() - HEAD_ROOM;
        let request = field_len(REQUEST_PARTIAL_HISTORY, partial);
        let control = 2; // local = true
        let info = field_len(INFO_STREAM_ID, stream_id.len());
        let record = field_len(RECORD_REQUEST, request)
            + field_len(RECORD_CONTROL, control)
            + field_len(RECORD_INFO, info);
        let message = field_len(SERVER_REQUEST_RECORD_PUBLISH, record);

        // The envelopes before the items, right-aligned in the head room.
        let mut head = Vec::with_capacity(HEAD_ROOM);
        head.push(MAGIC);
        head.extend_from_slice(&(message as u32).to_le_bytes());
        encode_key(
            SERVER_REQUEST_RECORD_PUBLISH,
            WireType::LengthDelimited,
            &mut head,
        );
        encode_varint(record as u64, &mut head);
        encode_key(RECORD_REQUEST, WireType::LengthDelimited, &mut head);
        encode_varint(request as u64, &mut head);
        encode_key(
            REQUEST_PARTIAL_HISTORY,
            WireType::LengthDelimited,
            &mut head,
        );
        encode_varint(partial as u64, &mut head);
        let start = HEAD_ROOM - head.len();
        self.buf[start..HEAD_ROOM].copy_from_slice(&head);

        // What follows the request in the record.
        encode_key(RECORD_CONTROL, WireType::LengthDelimited, &mut self.buf);
        encode_varint(control as u64, &mut self.buf);
        encode_key(CONTROL_LOCAL, WireType::Varint, &mut self.buf);
        encode_varint(1, &mut self.buf);
        encode_key(RECORD_INFO, WireType::LengthDelimited, &mut self.buf);
        encode_varint(info as u64, &mut self.buf);
        string_field(INFO_STREAM_ID, stream_id, &mut self.buf);

        // One move of a few hundred bytes, instead of a second buffer.
        self.buf.drain(..start);
        debug_assert_eq!(self.buf.len(), HEADER_LEN + message);
        self.buf
    }
}

/// Encoded size of a length-delimited field whose body is `len` bytes.
fn field_len(field: u32, len: usize) -> usize {
    prost::encoding::key_len(field) + encoded_len_varint(len as u64) + len
}

fn string_field(field: u32, s: &str, out: &mut Vec<u8>) {
    encode_key(field, WireType::LengthDelimited, out);
    encode_varint(s.len() as u64, out);
    out.extend_from_slice(s.as_bytes());
}

#[cfg(test)]
mod tests {
    use super::*;
    use prost::Message;
    use wandb_proto::pb;

    /// What prost writes for the same request.
    fn with_prost(
        stream_id: &str,
        items: &[(&str, Value)],
        step: Option<u64>,
        flush: Option<bool>,
    ) -> Vec<u8> {
        use pb::record::RecordType;
        use pb::request::RequestType;
        use pb::server_request::ServerRequestType;
        let partial = pb::PartialHistoryRequest {
            item: items
                .iter()
                .map(|(k, v)| pb::HistoryItem {
                    key: k.to_string(),
                    value_json: v.to_json(),
                    ..Default::default()
                })
                .collect(),
            step: step.map(|s| pb::HistoryStep { num: s as i64 }),
            action: flush.map(|flush| pb::HistoryAction { flush }),
            info: None,
        };
        let request = pb::ServerRequest {
            server_request_type: Some(ServerRequestType::RecordPublish(pb::Record {
                record_type: Some(RecordType::Request(pb::Request {
                    request_type: Some(RequestType::PartialHistory(partial)),
                })),
                control: Some(pb::Control {
                    local: true,
                    ..Default::default()
                }),
                info: Some(pb::RecordInfo {
                    stream_id: stream_id.into(),
                    ..Default::default()
                }),
                ..Default::default()
            })),
            ..Default::default()
        };
        let body = request.encode_to_vec();
        let mut out = vec![MAGIC];
        out.extend_from_slice(&(body.len() as u32).to_le_bytes());
        out.extend_from_slice(&body);
        out
    }

    fn ours(
        stream_id: &str,
        items: &[(&str, Value)],
        step: Option<u64>,
        flush: Option<bool>,
    ) -> Vec<u8> {
        let mut frame = RowFrame::new();
        for (k, v) in items {
            frame.item(k, v);
        }
        frame.finish(stream_id, step, flush)
    }

    #[test]
    fn writes_what_prost_writes() {
        let long_key = "k".repeat(300);
        let long_text = Value::Str("x".repeat(70_000));
        let rows: Vec<Vec<(&str, Value)>> = vec![
            vec![],
            vec![("loss", Value::Float(0.25)), ("epoch", Value::Int(3))],
            (0..10)
                .map(|i| ("m", Value::Float(i as f64 * 1e-7)))
                .collect(),
            vec![
                (long_key.as_str(), long_text),
                ("nan", Value::Float(f64::NAN)),
            ],
            vec![("ok", Value::Bool(true)), ("none", Value::Null)],
        ];
        for row in &rows {
            for step in [None, Some(0), Some(1), Some(1 << 40)] {
                for flush in [None, Some(false), Some(true)] {
                    for id in ["run1", &"r".repeat(200)] {
                        assert_eq!(
                            ours(id, row, step, flush),
                            with_prost(id, row, step, flush),
                            "{row:?} {step:?} {flush:?}"
                        );
                    }
                }
            }
        }
    }
}

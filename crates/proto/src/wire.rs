//! Byte-level work on encoded `Record`s.
//!
//! The service keeps records as the bytes the client sent: decoding and
//! re-encoding would cost time on the hottest path and would drop any field
//! our schema does not model. What it needs without a full decode is here:
//! which record type a payload carries, its `num`, and setting `num` while
//! keeping every other byte.

use std::sync::OnceLock;

use crate::descriptor_pool;

/// Field number of `Record.num`.
pub const RECORD_NUM_FIELD: u32 = 1;

/// Protobuf wire types (the low three bits of a tag).
const VARINT: u8 = 0;
const FIXED64: u8 = 1;
const LEN: u8 = 2;
const FIXED32: u8 = 5;

/// A payload that is not a well-formed protobuf message at its top level.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("malformed protobuf at byte {offset}: {reason}")]
pub struct WireError {
    pub offset: usize,
    pub reason: &'static str,
}

/// What [`scan_record`] learns from a `Record`'s top-level fields.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RecordScan {
    /// `Record.num` (the last occurrence wins, as in any protobuf decoder).
    pub num: Option<i64>,
    /// Field number of the `record_type` oneof case that is set.
    pub record_type: Option<u32>,
}

impl RecordScan {
    /// The oneof case name (`history`, `summary`, `request`, …).
    pub fn record_type_name(&self) -> Option<&'static str> {
        self.record_type.and_then(record_type_name)
    }
}

/// One top-level field of an encoded message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Field {
    pub number: u32,
    pub wire_type: u8,
    /// Where the field (its tag) starts.
    pub start: usize,
    /// Where its value starts (after the tag; for length-delimited fields,
    /// before the length).
    pub value: usize,
    /// Just past the field.
    pub end: usize,
}

impl Field {
    /// The payload of a length-delimited field (a string, bytes or an
    /// embedded message), as a range of the message it was read from.
    pub fn payload(&self, msg: &[u8]) -> Option<std::ops::Range<usize>> {
        if self.wire_type != LEN {
            return None;
        }
        let mut pos = self.value;
        read_varint(msg, &mut pos).ok()?;
        Some(pos..self.end)
    }
}

pub(crate) fn read_varint(buf: &[u8], pos: &mut usize) -> Result<u64, WireError> {
    let start = *pos;
    let mut value = 0u64;
    for shift in (0..64).step_by(7) {
        let Some(&byte) = buf.get(*pos) else {
            return Err(WireError {
                offset: start,
                reason: "truncated varint",
            });
        };
        *pos += 1;
        value |= u64::from(byte & 0x7f) << shift;
        if byte & 0x80 == 0 {
            return Ok(value);
        }
    }
    Err(WireError {
        offset: start,
        reason: "varint longer than 10 bytes",
    })
}

fn write_varint(mut value: u64, out: &mut Vec<u8>) {
    while value >= 0x80 {
        out.push(value as u8 | 0x80);
        value >>= 7;
    }
    out.push(value as u8);
}

/// Iterates over the top-level fields of an encoded message; stops after the
/// first error.
pub fn fields(buf: &[u8]) -> impl Iterator<Item = Result<Field, WireError>> + '_ {
    let mut pos = 0;
    std::iter::from_fn(move || {
        if pos >= buf.len() {
            return None;
        }
        let start = pos;
        let parsed = (|| {
            let tag = read_varint(buf, &mut pos)?;
            let number = u32::try_from(tag >> 3)
                .ok()
                .filter(|n| *n != 0)
                .ok_or(WireError {
                    offset: start,
                    reason: "invalid field number",
                })?;
            let wire_type = (tag & 7) as u8;
            let value = pos;
            let skip = match wire_type {
                VARINT => {
                    read_varint(buf, &mut pos)?;
                    0
                }
                FIXED64 => 8,
                FIXED32 => 4,
                LEN => read_varint(buf, &mut pos)?,
                _ => {
                    return Err(WireError {
                        offset: start,
                        reason: "unsupported wire type",
                    });
                }
            };
            let end = (pos as u64)
                .checked_add(skip)
                .filter(|e| *e <= buf.len() as u64)
                .ok_or(WireError {
                    offset: start,
                    reason: "field runs past the end of the message",
                })? as usize;
            pos = end;
            Ok(Field {
                number,
                wire_type,
                start,
                value,
                end,
            })
        })();
        if parsed.is_err() {
            pos = buf.len(); // stop after the first error
        }
        Some(parsed)
    })
}

/// Field numbers of the `Record.record_type` oneof, from the schema.
fn record_type_names() -> &'static [(u32, &'static str)] {
    static NAMES: OnceLock<Vec<(u32, &'static str)>> = OnceLock::new();
    NAMES.get_or_init(|| {
        let record = descriptor_pool()
            .get_message_by_name("wandb_internal.Record")
            .expect("schema declares wandb_internal.Record");
        let oneof = record
            .oneofs()
            .find(|o| o.name() == "record_type")
            .expect("Record has the record_type oneof");
        oneof
            .fields()
            .map(|f| (f.number(), &*f.name().to_owned().leak()))
            .collect()
    })
}

/// The name of the `record_type` case with this field number.
pub fn record_type_name(field_number: u32) -> Option<&'static str> {
    record_type_names()
        .iter()
        .find(|(n, _)| *n == field_number)
        .map(|(_, name)| *name)
}

/// Every `record_type` case name, in schema order.
pub fn record_type_names_all() -> impl Iterator<Item = &'static str> {
    record_type_names().iter().map(|(_, name)| *name)
}

/// Reads `num` and the record type of an encoded `Record` without decoding it.
pub fn scan_record(payload: &[u8]) -> Result<RecordScan, WireError> {
    let mut scan = RecordScan::default();
    for field in fields(payload) {
        let field = field?;
        if field.number == RECORD_NUM_FIELD && field.wire_type == VARINT {
            let mut pos = field.value;
            scan.num = Some(read_varint(payload, &mut pos)? as i64);
        } else if field.wire_type == LEN && record_type_name(field.number).is_some() {
            scan.record_type = Some(field.number);
        }
    }
    Ok(scan)
}

/// Writes into `out` the record `payload` with `num` set to `num`.
///
/// `num` goes first, where a canonical encoder (wandb-core's included) puts
/// field 1, so a record the SDK sent is stored exactly as wandb-core stores
/// it. Any `num` already in the payload is dropped; every other byte is
/// copied as received.
pub fn set_record_num(payload: &[u8], num: i64, out: &mut Vec<u8>) -> Result<(), WireError> {
    out.clear();
    out.reserve(payload.len() + 11);
    out.push((RECORD_NUM_FIELD << 3) as u8 | VARINT);
    write_varint(num as u64, out);

    // Common case: no num in the payload, one copy.
    let mut copied_to = 0;
    for field in fields(payload) {
        let field = field?;
        if field.number == RECORD_NUM_FIELD {
            out.extend_from_slice(&payload[copied_to..field.start]);
            copied_to = field.end;
        }
    }
    out.extend_from_slice(&payload[copied_to..]);
    Ok(())
}

#[cfg(test)]
mod tests {
    use prost::Message;

    use super::*;
    use crate::pb;

    fn history_record(num: i64) -> pb::Record {
        pb::Record {
            num,
            record_type: Some(pb::record::RecordType::History(pb::HistoryRecord {
                item: vec![pb::HistoryItem {
                    key: "loss".into(),
                    value_json: "0.5".into(),
                    ..Default::default()
                }],
                ..Default::default()
            })),
            info: Some(pb::RecordInfo {
                stream_id: "abc123".into(),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    #[test]
    fn scan_finds_num_and_type() {
        let bytes = history_record(42).encode_to_vec();
        let scan = scan_record(&bytes).unwrap();
        assert_eq!(scan.num, Some(42));
        assert_eq!(scan.record_type_name(), Some("history"));

        let empty = scan_record(&[]).unwrap();
        assert_eq!(empty, RecordScan::default());
    }

    #[test]
    fn set_num_matches_a_canonical_encoding() {
        let sent = history_record(0).encode_to_vec();
        let mut out = Vec::new();
        set_record_num(&sent, 7, &mut out).unwrap();
        assert_eq!(out, history_record(7).encode_to_vec());

        // A num already present is replaced, not duplicated.
        let mut again = Vec::new();
        set_record_num(&out, 300, &mut again).unwrap();
        assert_eq!(again, history_record(300).encode_to_vec());
    }

    #[test]
    fn unknown_fields_survive_numbering() {
        let mut sent = history_record(0).encode_to_vec();
        // Field 999, length-delimited, unknown to our schema.
        sent.extend_from_slice(&[0xba, 0x3e, 3, b'x', b'y', b'z']);
        let mut out = Vec::new();
        set_record_num(&sent, 1, &mut out).unwrap();
        assert_eq!(&out[2..], &sent[..]);
        assert!(out.ends_with(&[0xba, 0x3e, 3, b'x', b'y', b'z']));
    }

    #[test]
    fn malformed_payloads_are_errors_not_panics() {
        for bad in [
            &[0x0a, 0x05, 1][..],
            &[0xff; 11][..],
            &[0x00][..],
            &[0x0b][..],
        ] {
            assert!(scan_record(bad).is_err(), "{bad:?}");
            assert!(set_record_num(bad, 1, &mut Vec::new()).is_err(), "{bad:?}");
        }
    }

    proptest::proptest! {
        #[test]
        fn scanning_random_bytes_never_panics(bytes in proptest::collection::vec(proptest::num::u8::ANY, 0..64)) {
            let _ = scan_record(&bytes);
            let _ = set_record_num(&bytes, 1, &mut Vec::new());
        }
    }
}

//! A record in the protobuf text format, as W&B's inspector prints it.
//!
//! This is the full record, bookkeeping included (`num`, `control`,
//! `_info`, fields this schema does not know), for reading with `less`:
//! fields in declaration order, nested messages indented by two spaces,
//! map entries sorted by key. (Go's printer randomly puts one or two spaces
//! after a colon, so that no one parses its output; we always put one.)

use prost_reflect::{
    DynamicMessage, Kind, MapKey, ReflectMessage as _, UnknownField, Value as PValue,
};

use super::gofmt;
use super::record::{Decoded, declared_fields};

/// `# record N: type`, the record, and a blank line.
pub fn record_block(index: u64, rec: &Decoded) -> String {
    let mut out = format!("# record {index}: {}\n", rec.type_name);
    write_message(&mut out, &rec.msg, 0);
    out.push('\n');
    out
}

/// The record's fields (no header), for the browser's detail pane.
pub fn message_text(msg: &DynamicMessage) -> String {
    let mut out = String::new();
    write_message(&mut out, msg, 0);
    out
}

fn indent(out: &mut String, depth: usize) {
    for _ in 0..depth {
        out.push_str("  ");
    }
}

/// A nested message's fields (`body`, indented one level deeper) in
/// braces, or `{}` when it has none.
fn write_braced(out: &mut String, body: &str, depth: usize) {
    if body.is_empty() {
        out.push_str("{}\n");
    } else {
        out.push_str("{\n");
        out.push_str(body);
        indent(out, depth);
        out.push_str("}\n");
    }
}

fn write_message(out: &mut String, msg: &DynamicMessage, depth: usize) {
    for field in declared_fields(&msg.descriptor()) {
        if !msg.has_field(&field) {
            continue;
        }
        let value = msg.get_field(&field);
        let kind = field.kind();
        match value.as_ref() {
            PValue::List(items) => {
                for item in items {
                    write_field(out, field.name(), &kind, item, depth);
                }
            }
            PValue::Map(map) => {
                let Some(entry) = kind.as_message() else {
                    continue;
                };
                let key_kind = entry.map_entry_key_field().kind();
                let value_kind = entry.map_entry_value_field().kind();
                let mut entries: Vec<(&MapKey, &PValue)> = map.iter().collect();
                entries.sort_by(|a, b| a.0.cmp(b.0));
                for (k, v) in entries {
                    indent(out, depth);
                    out.push_str(field.name());
                    out.push_str(": {\n");
                    let key = match k {
                        MapKey::Bool(b) => PValue::Bool(*b),
                        MapKey::I32(i) => PValue::I32(*i),
                        MapKey::I64(i) => PValue::I64(*i),
                        MapKey::U32(i) => PValue::U32(*i),
                        MapKey::U64(i) => PValue::U64(*i),
                        MapKey::String(s) => PValue::String(s.clone()),
                    };
                    write_field(out, "key", &key_kind, &key, depth + 1);
                    write_field(out, "value", &value_kind, v, depth + 1);
                    indent(out, depth);
                    out.push_str("}\n");
                }
            }
            v => write_field(out, field.name(), &kind, v, depth),
        }
    }
    for unknown in msg.unknown_fields() {
        write_unknown(out, unknown, depth);
    }
}

fn write_field(out: &mut String, name: &str, kind: &Kind, value: &PValue, depth: usize) {
    indent(out, depth);
    out.push_str(name);
    out.push_str(": ");
    match value {
        PValue::Message(m) => {
            let mut body = String::new();
            write_message(&mut body, m, depth + 1);
            write_braced(out, &body, depth);
            return;
        }
        PValue::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
        PValue::I32(i) => out.push_str(&i.to_string()),
        PValue::I64(i) => out.push_str(&i.to_string()),
        PValue::U32(i) => out.push_str(&i.to_string()),
        PValue::U64(i) => out.push_str(&i.to_string()),
        PValue::F32(f) => gofmt::write_g32(out, *f, gofmt::TEXT),
        PValue::F64(f) => gofmt::write_g(out, *f, gofmt::TEXT),
        PValue::String(s) => gofmt::write_text_bytes(out, s.as_bytes()),
        PValue::Bytes(b) => gofmt::write_text_bytes(out, b),
        PValue::EnumNumber(n) => match kind.as_enum().and_then(|e| e.get_value(*n)) {
            Some(v) => out.push_str(v.name()),
            None => out.push_str(&n.to_string()),
        },
        PValue::List(_) | PValue::Map(_) => {}
    }
    out.push('\n');
}

/// A field the schema does not know, by number: varints as unsigned
/// decimals, fixed-width values in hex, bytes quoted, groups nested.
fn write_unknown(out: &mut String, field: &UnknownField, depth: usize) {
    let mut bytes = Vec::new();
    field.encode(&mut bytes);
    let mut pos = 0;
    write_unknown_bytes(out, &bytes, &mut pos, depth);
}

fn read_varint(bytes: &[u8], pos: &mut usize) -> Option<u64> {
    let mut value = 0u64;
    for shift in (0..64).step_by(7) {
        let b = *bytes.get(*pos)?;
        *pos += 1;
        value |= u64::from(b & 0x7f) << shift;
        if b & 0x80 == 0 {
            return Some(value);
        }
    }
    None
}

/// Writes the encoded unknown field at `pos` (a tag and its value);
/// `None` at a group's end tag or on bytes that do not parse.
fn write_unknown_bytes(
    out: &mut String,
    bytes: &[u8],
    pos: &mut usize,
    depth: usize,
) -> Option<()> {
    let tag = read_varint(bytes, pos)?;
    let (number, wire) = (tag >> 3, tag & 7);
    if wire == 4 {
        return None;
    }
    indent(out, depth);
    out.push_str(&number.to_string());
    out.push_str(": ");
    match wire {
        0 => out.push_str(&read_varint(bytes, pos)?.to_string()),
        1 => {
            let raw: [u8; 8] = bytes.get(*pos..*pos + 8)?.try_into().ok()?;
            *pos += 8;
            out.push_str(&format!("0x{:x}", u64::from_le_bytes(raw)));
        }
        5 => {
            let raw: [u8; 4] = bytes.get(*pos..*pos + 4)?.try_into().ok()?;
            *pos += 4;
            out.push_str(&format!("0x{:x}", u32::from_le_bytes(raw)));
        }
        2 => {
            let len = usize::try_from(read_varint(bytes, pos)?).ok()?;
            let body = bytes.get(*pos..pos.checked_add(len)?)?;
            *pos += len;
            gofmt::write_text_bytes(out, body);
        }
        3 => {
            let mut body = String::new();
            while write_unknown_bytes(&mut body, bytes, pos, depth + 1).is_some() {}
            write_braced(out, &body, depth);
            return Some(());
        }
        _ => return None,
    }
    out.push('\n');
    Some(())
}

#[cfg(test)]
mod tests {
    use prost::Message as _;
    use wandb_proto::pb;

    use super::super::record::decode;
    use super::*;

    #[test]
    fn prints_the_text_format() {
        let record = pb::Record {
            num: 5,
            record_type: Some(pb::record::RecordType::History(pb::HistoryRecord {
                item: vec![pb::HistoryItem {
                    key: "loss".into(),
                    value_json: "0.5".into(),
                    ..Default::default()
                }],
                step: Some(Default::default()),
                ..Default::default()
            })),
            ..Default::default()
        };
        let mut bytes = record.encode_to_vec();
        // An unknown fixed32 field 300 and varint field 303.
        bytes.extend_from_slice(&[0xe5, 0x12, 0xef, 0xbe, 0xad, 0xde, 0xf8, 0x12, 0x07]);
        let text = record_block(1, &decode(&bytes).unwrap());
        assert_eq!(
            text,
            "# record 1: history\nnum: 5\nhistory: {\n  item: {\n    key: \"loss\"\n    \
             value_json: \"0.5\"\n  }\n  step: {}\n}\n300: 0xdeadbeef\n303: 7\n\n"
        );
    }
}

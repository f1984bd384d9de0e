//! A record as one line of JSON, in W&B's `leet inspect --json` shape.
//!
//! The shape is protobuf's JSON mapping (proto field names, 64-bit
//! integers as strings, enum names, RFC 3339 timestamps) with what makes
//! it useful to `jq`: `{"num", "type", <type>: payload}`, object keys
//! sorted, key/value lists (`item`, `update`, `extra`, …) turned into
//! objects of decoded values, a history step as a number, and the
//! bookkeeping fields (`control`, `uuid`, `_info`) left out.

use std::collections::BTreeMap;

use base64::Engine as _;
use prost_reflect::{DynamicMessage, Kind, MapKey, ReflectMessage as _, Value as PValue};
use wandb_proto::json::{self, Escapes, Format, Value};

use super::gofmt::{self, Time};
use super::record::Decoded;

/// An object's members by key: sorted, as W&B's inspector writes them.
type Members = BTreeMap<String, Value>;

fn object(members: Members) -> Value {
    Value::Object(members.into_iter().collect())
}

/// A `value_json` as W&B's inspector decodes it (keys sorted), `None`
/// where its reader refuses the text.
pub fn decode_value(text: &str) -> Option<Value> {
    let mut value = Value::parse_lenient(text).ok()?;
    value.sort_keys();
    Some(value)
}

/// `{"num":…,"type":…,<type>:…}` for a decoded record, one line.
pub fn record_line(index: u64, rec: &Decoded) -> String {
    let mut out = String::new();
    out.push_str("{\"num\":");
    out.push_str(&index.to_string());
    out.push_str(",\"type\":");
    json::write_str_with(&rec.type_name, Escapes::GoJson, &mut out);
    if let Some((field, payload)) = rec.payload() {
        out.push(',');
        json::write_str_with(field.name(), Escapes::GoJson, &mut out);
        out.push(':');
        payload_json(field.name(), payload).write_with(&mut out, Format::GO_JSON);
    }
    out.push('}');
    out
}

/// The payload of a record (the message its type field holds).
fn payload_json(field: &str, msg: &DynamicMessage) -> Value {
    if let Some(wkt) = well_known(msg) {
        return wkt;
    }
    let mut members = message_members(msg);
    members.remove("_info");
    match field {
        // The step of a history row as the number it is.
        "history" if msg.has_field_by_name("step") => {
            let num = msg
                .get_field_by_name("step")
                .and_then(|step| step.as_message()?.get_field_by_name("num")?.as_i64())
                .unwrap_or(0);
            let step = Value::Object(vec![("num".to_string(), Value::Int(num))]);
            members.insert("step".to_string(), step);
        }
        // Zero values these show even so: a clean exit, stderr.
        "exit" => {
            let code = msg
                .get_field_by_name("exit_code")
                .and_then(|c| c.as_i32())
                .unwrap_or(0);
            members.insert("exit_code".to_string(), Value::Int(i64::from(code)));
        }
        "output_raw" => {
            if let Some(field) = msg.descriptor().get_field_by_name("output_type") {
                let value = msg.get_field(&field);
                members.insert(
                    "output_type".to_string(),
                    scalar_json(&field.kind(), &value),
                );
            }
        }
        _ => {}
    }
    object(members)
}

/// Protobuf's JSON mapping of a message, key/value lists made objects.
pub fn message_json(msg: &DynamicMessage) -> Value {
    match well_known(msg) {
        Some(wkt) => wkt,
        None => object(message_members(msg)),
    }
}

/// The members of [`message_json`] for a message that is not one of the
/// well-known types.
fn message_members(msg: &DynamicMessage) -> Members {
    let mut members = Members::new();
    for (field, value) in msg.fields() {
        let json = match value {
            PValue::List(items) => {
                let items: Vec<Value> = items
                    .iter()
                    .map(|v| scalar_json(&field.kind(), v))
                    .collect();
                key_value_object(&items).unwrap_or(Value::Array(items))
            }
            PValue::Map(map) => {
                let value_kind = field
                    .kind()
                    .as_message()
                    .map(|entry| entry.map_entry_value_field().kind());
                let mut obj = Members::new();
                for (k, v) in map {
                    let key = match k {
                        MapKey::Bool(b) => b.to_string(),
                        MapKey::I32(i) => i.to_string(),
                        MapKey::I64(i) => i.to_string(),
                        MapKey::U32(i) => i.to_string(),
                        MapKey::U64(i) => i.to_string(),
                        MapKey::String(s) => s.clone(),
                    };
                    let v = match &value_kind {
                        Some(kind) => scalar_json(kind, v),
                        None => Value::Null,
                    };
                    obj.insert(key, v);
                }
                object(obj)
            }
            v => scalar_json(&field.kind(), v),
        };
        members.insert(field.name().to_string(), json);
    }
    members
}

/// A list of `{key | nested_key, value_json}` items as an object of
/// decoded values, if every item has a `value_json`.
fn key_value_object(items: &[Value]) -> Option<Value> {
    let mut obj = Members::new();
    for item in items {
        let Some(Value::Str(value_json)) = item.get("value_json") else {
            return None;
        };
        let key = match item.get("nested_key") {
            Some(Value::Array(parts)) => parts
                .iter()
                .map(|p| match p {
                    Value::Str(s) => s.as_str(),
                    _ => "",
                })
                .collect::<Vec<_>>()
                .join("."),
            _ => match item.get("key") {
                Some(Value::Str(k)) => k.clone(),
                _ => String::new(),
            },
        };
        let value = decode_value(value_json).unwrap_or_else(|| Value::Str(value_json.clone()));
        obj.insert(key, value);
    }
    (!obj.is_empty()).then(|| object(obj))
}

/// One value of a field.
fn scalar_json(kind: &Kind, value: &PValue) -> Value {
    match value {
        PValue::Bool(b) => Value::Bool(*b),
        PValue::I32(i) => Value::Int(i64::from(*i)),
        PValue::U32(i) => Value::Int(i64::from(*i)),
        PValue::I64(i) => Value::Str(i.to_string()),
        PValue::U64(i) => Value::Str(i.to_string()),
        PValue::F32(f) => Value::Float(gofmt::f32_as_f64(*f)),
        PValue::F64(f) => Value::Float(*f),
        PValue::String(s) => Value::Str(s.clone()),
        PValue::Bytes(b) => Value::Str(base64::engine::general_purpose::STANDARD.encode(b)),
        PValue::EnumNumber(n) => match kind {
            Kind::Enum(e) if e.full_name() == "google.protobuf.NullValue" => Value::Null,
            Kind::Enum(e) => match e.get_value(*n) {
                Some(v) => Value::Str(v.name().to_string()),
                None => Value::Int(i64::from(*n)),
            },
            _ => Value::Int(i64::from(*n)),
        },
        PValue::Message(m) => message_json(m),
        PValue::List(items) => Value::Array(items.iter().map(|v| scalar_json(kind, v)).collect()),
        PValue::Map(_) => Value::Null,
    }
}

/// The JSON forms protobuf gives its well-known types.
fn well_known(msg: &DynamicMessage) -> Option<Value> {
    let desc = msg.descriptor();
    let name = desc.full_name();
    if !name.starts_with("google.protobuf.") {
        return None;
    }
    let field = |n: &str| msg.get_field_by_name(n);
    match name {
        "google.protobuf.Timestamp" => {
            let secs = field("seconds")?.as_i64()?;
            let nanos = field("nanos")?.as_i32()?;
            let t = Time::from_proto(&prost_types::Timestamp {
                seconds: secs,
                nanos,
            });
            Some(Value::Str(gofmt::proto_json_time(t)))
        }
        "google.protobuf.Duration" => {
            let secs = field("seconds")?.as_i64()?;
            let nanos = field("nanos")?.as_i32()?;
            let mut text = format!(
                "{}{}",
                if secs < 0 || nanos < 0 { "-" } else { "" },
                secs.abs()
            );
            let nanos = nanos.unsigned_abs();
            if nanos > 0 {
                let frac = format!("{nanos:09}");
                let keep = if nanos.is_multiple_of(1_000_000) {
                    3
                } else if nanos.is_multiple_of(1_000) {
                    6
                } else {
                    9
                };
                text.push('.');
                text.push_str(&frac[..keep]);
            }
            text.push('s');
            Some(Value::Str(text))
        }
        "google.protobuf.Empty" => Some(Value::Object(Vec::new())),
        "google.protobuf.Struct" => {
            let fields = field("fields")?;
            let mut obj = Members::new();
            if let Some(map) = fields.as_map() {
                for (k, v) in map {
                    if let (MapKey::String(k), Some(m)) = (k, v.as_message()) {
                        obj.insert(k.clone(), message_json(m));
                    }
                }
            }
            Some(object(obj))
        }
        "google.protobuf.ListValue" => {
            let values = field("values")?;
            let items = values
                .as_list()
                .unwrap_or(&[])
                .iter()
                .filter_map(|v| v.as_message().map(message_json))
                .collect();
            Some(Value::Array(items))
        }
        "google.protobuf.Value" => {
            let (f, v) = msg.fields().next()?;
            Some(match v {
                PValue::Message(m) => message_json(m),
                other => scalar_json(&f.kind(), other),
            })
        }
        "google.protobuf.DoubleValue"
        | "google.protobuf.FloatValue"
        | "google.protobuf.Int64Value"
        | "google.protobuf.UInt64Value"
        | "google.protobuf.Int32Value"
        | "google.protobuf.UInt32Value"
        | "google.protobuf.BoolValue"
        | "google.protobuf.StringValue"
        | "google.protobuf.BytesValue" => {
            let f = desc.get_field_by_name("value")?;
            Some(scalar_json(&f.kind(), &msg.get_field(&f)))
        }
        _ => None,
    }
}

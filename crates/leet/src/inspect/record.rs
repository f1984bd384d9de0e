//! One record of a log, decoded by reflection and named.
//!
//! Every output mode shows records through the schema (field names, enum
//! names, unknown fields), so a record is decoded once into a
//! `DynamicMessage` and named the way W&B names it: its type's field name,
//! `request/<kind>` for requests, `unknown` for none.

use std::sync::OnceLock;

use prost_reflect::{DynamicMessage, FieldDescriptor, MessageDescriptor, Value as PValue};

/// A decoded record and its type name.
pub struct Decoded {
    pub msg: DynamicMessage,
    pub type_name: String,
}

impl Decoded {
    /// The field holding the record's payload, and the payload.
    pub fn payload(&self) -> Option<(FieldDescriptor, &DynamicMessage)> {
        self.msg.fields().find_map(|(field, value)| match value {
            PValue::Message(m) if in_oneof(&field, "record_type") => Some((field, m)),
            _ => None,
        })
    }
}

fn in_oneof(field: &FieldDescriptor, oneof: &str) -> bool {
    field.containing_oneof().is_some_and(|o| o.name() == oneof)
}

/// The schema's `Record`.
pub fn record_descriptor() -> &'static MessageDescriptor {
    static DESC: OnceLock<MessageDescriptor> = OnceLock::new();
    DESC.get_or_init(|| {
        wandb_proto::descriptor_pool()
            .get_message_by_name("wandb_internal.Record")
            .expect("the schema declares wandb_internal.Record")
    })
}

/// Decodes a record; the error is the reason W&B gives for skipping one.
pub fn decode(bytes: &[u8]) -> Result<Decoded, String> {
    let msg = DynamicMessage::decode(record_descriptor().clone(), bytes).map_err(|e| {
        if e.to_string().contains("UTF-8") {
            "string field contains invalid UTF-8".to_string()
        } else {
            "proto: cannot parse invalid wire-format data".to_string()
        }
    })?;
    let mut decoded = Decoded {
        msg,
        type_name: String::new(),
    };
    decoded.type_name = match decoded.payload() {
        None => "unknown".to_string(),
        Some((field, payload)) if field.name() == "request" => {
            let kind = payload
                .fields()
                .find(|(f, _)| in_oneof(f, "request_type"))
                .map(|(f, _)| f.name().to_string());
            match kind {
                Some(kind) => format!("request/{kind}"),
                None => "request".to_string(),
            }
        }
        Some((field, _)) => field.name().to_string(),
    };
    Ok(decoded)
}

/// The fields of a message in the order the schema declares them (the
/// order the text format prints them in).
pub fn declared_fields(desc: &MessageDescriptor) -> Vec<FieldDescriptor> {
    desc.descriptor_proto()
        .field
        .iter()
        .filter_map(|f| desc.get_field(f.number.and_then(|n| u32::try_from(n).ok())?))
        .collect()
}

#[cfg(test)]
mod tests {
    use prost::Message as _;
    use wandb_proto::pb;

    use super::*;

    fn encode(record: pb::Record) -> Vec<u8> {
        record.encode_to_vec()
    }

    #[test]
    fn names_records_as_w_and_b_does() {
        let history = pb::Record {
            record_type: Some(pb::record::RecordType::History(Default::default())),
            ..Default::default()
        };
        assert_eq!(decode(&encode(history)).unwrap().type_name, "history");
        let defer = pb::Record {
            record_type: Some(pb::record::RecordType::Request(pb::Request {
                request_type: Some(pb::request::RequestType::Defer(Default::default())),
            })),
            ..Default::default()
        };
        assert_eq!(decode(&encode(defer)).unwrap().type_name, "request/defer");
        assert_eq!(decode(&[]).unwrap().type_name, "unknown");
        assert_eq!(
            decode(b"\x10\x01\xff\xff").err().unwrap(),
            "proto: cannot parse invalid wire-format data"
        );
    }

    #[test]
    fn declared_order_is_not_number_order() {
        let names: Vec<String> = declared_fields(record_descriptor())
            .iter()
            .map(|f| f.name().to_string())
            .collect();
        let run = names.iter().position(|n| n == "run").unwrap();
        let control = names.iter().position(|n| n == "control").unwrap();
        assert!(run < control, "{names:?}");
        assert_eq!(names.last().map(String::as_str), Some("_info"));
    }
}

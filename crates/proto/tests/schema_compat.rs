//! Our `.proto` files against the descriptors of the installed wandb 0.31.0
//! package: every message, field and enum value we declare must exist there
//! with the same number, type, label, type name and oneof.

use std::collections::BTreeMap;

use prost::Message;
use prost_types::field_descriptor_proto::{Label, Type};
use prost_types::{DescriptorProto, EnumDescriptorProto, FieldDescriptorProto, FileDescriptorSet};

#[derive(Default)]
struct Index {
    messages: BTreeMap<String, DescriptorProto>,
    enums: BTreeMap<String, EnumDescriptorProto>,
}

fn index(fds: &FileDescriptorSet) -> Index {
    fn walk(
        idx: &mut Index,
        prefix: &str,
        msgs: &[DescriptorProto],
        enums: &[EnumDescriptorProto],
    ) {
        for e in enums {
            idx.enums
                .insert(format!("{prefix}.{}", e.name()), e.clone());
        }
        for m in msgs {
            let name = format!("{prefix}.{}", m.name());
            walk(idx, &name, &m.nested_type, &m.enum_type);
            idx.messages.insert(name, m.clone());
        }
    }
    let mut idx = Index::default();
    for file in fds
        .file
        .iter()
        .filter(|f| f.package() == wandb_proto::PACKAGE)
    {
        walk(
            &mut idx,
            &format!(".{}", file.package()),
            &file.message_type,
            &file.enum_type,
        );
    }
    idx
}

/// protoc's default JSON name: underscores dropped, the next letter upper-cased.
fn default_json_name(name: &str) -> String {
    let mut out = String::new();
    let mut upper = false;
    for c in name.chars() {
        if c == '_' {
            upper = true;
        } else if upper {
            out.extend(c.to_uppercase());
            upper = false;
        } else {
            out.push(c);
        }
    }
    out
}

fn describe(f: &FieldDescriptorProto, msg: &DescriptorProto) -> String {
    let oneof = f
        .oneof_index
        .filter(|_| !f.proto3_optional())
        .map(|i| msg.oneof_decl[i as usize].name().to_string());
    // The effective JSON name (explicit ones such as `gpu_type` → "gpu"
    // shape wandb-metadata.json).
    let json_name = f
        .json_name
        .clone()
        .unwrap_or_else(|| default_json_name(f.name()));
    format!(
        "number {} type {:?} label {:?} type_name {:?} proto3_optional {} oneof {:?} json_name {json_name}",
        f.number(),
        Type::try_from(f.r#type.unwrap_or_default()),
        Label::try_from(f.label.unwrap_or_default()),
        f.type_name(),
        f.proto3_optional(),
        oneof
    )
}

#[test]
fn our_schema_matches_the_installed_wandb_descriptors() {
    let ours = index(&FileDescriptorSet::decode(wandb_proto::FILE_DESCRIPTOR_SET).unwrap());
    let theirs =
        index(&FileDescriptorSet::decode(&testkit::installed_descriptor_set()[..]).unwrap());
    assert!(
        theirs.messages.len() > 100,
        "installed descriptors look incomplete"
    );

    let mut problems = Vec::new();
    let (mut fields, mut values) = (0, 0);
    for (name, msg) in &ours.messages {
        let Some(their) = theirs.messages.get(name) else {
            problems.push(format!("message {name} does not exist in wandb"));
            continue;
        };
        if msg.options.as_ref().map(|o| o.map_entry())
            != their.options.as_ref().map(|o| o.map_entry())
        {
            problems.push(format!("message {name}: map_entry differs"));
        }
        for field in &msg.field {
            fields += 1;
            let Some(their_field) = their.field.iter().find(|f| f.name() == field.name()) else {
                problems.push(format!("{name}.{} does not exist in wandb", field.name()));
                continue;
            };
            let (a, b) = (describe(field, msg), describe(their_field, their));
            if a != b {
                problems.push(format!("{name}.{}: ours {a}, wandb {b}", field.name()));
            }
        }
    }
    for (name, en) in &ours.enums {
        let Some(their) = theirs.enums.get(name) else {
            problems.push(format!("enum {name} does not exist in wandb"));
            continue;
        };
        for v in &en.value {
            values += 1;
            match their.value.iter().find(|t| t.name() == v.name()) {
                Some(t) if t.number() == v.number() => {}
                Some(t) => problems.push(format!(
                    "{name}.{}: ours {}, wandb {}",
                    v.name(),
                    v.number(),
                    t.number()
                )),
                None => problems.push(format!("{name}.{} does not exist in wandb", v.name())),
            }
        }
    }
    assert!(
        problems.is_empty(),
        "schema differs from wandb 0.31.0:\n{}",
        problems.join("\n")
    );

    // The envelope and every record and request type must be declared in
    // full: those are what the service routes.
    for name in [
        ".wandb_internal.ServerRequest",
        ".wandb_internal.ServerResponse",
        ".wandb_internal.Record",
        ".wandb_internal.Result",
        ".wandb_internal.Request",
        ".wandb_internal.Response",
        ".wandb_internal.Control",
    ] {
        let ours = &ours.messages[name];
        for f in &theirs.messages[name].field {
            assert!(
                ours.field.iter().any(|o| o.name() == f.name()),
                "{name}.{} is not declared in our schema",
                f.name()
            );
        }
    }

    let their_fields: usize = theirs.messages.values().map(|m| m.field.len()).sum();
    println!(
        "schema check: {} messages, {fields} fields, {} enums ({values} values) match wandb 0.31.0 \
         (wandb declares {} messages, {their_fields} fields)",
        ours.messages.len(),
        ours.enums.len(),
        theirs.messages.len(),
    );
}

#[test]
fn generated_types_round_trip_a_server_request() {
    use wandb_proto::pb;
    let request = pb::ServerRequest {
        request_id: "abc".into(),
        server_request_type: Some(pb::server_request::ServerRequestType::RecordPublish(
            pb::Record {
                record_type: Some(pb::record::RecordType::Exit(pb::RunExitRecord {
                    exit_code: 3,
                    ..Default::default()
                })),
                ..Default::default()
            },
        )),
    };
    let bytes = request.encode_to_vec();
    assert_eq!(pb::ServerRequest::decode(&bytes[..]).unwrap(), request);
}

#!/usr/bin/env python3
"""Writes this crate's .proto files from an installed wandb package.

The schema must stay wire-compatible with the wandb SDK we serve (same
package, message names, field numbers, types and labels), so rather than
typing ~300 messages by hand we derive them from the descriptors that the
installed package itself uses on the wire.  Only names, numbers, types,
labels, oneofs, maps, explicit JSON names and reserved ranges are carried
over.

Usage (from the repository root, with a Python that has wandb installed):

    python crates/proto/schema/generate.py [--out crates/proto/schema]

`tests/schema_compat.rs` checks the committed files against the installed
package, so a regeneration is only needed when the supported wandb version
changes.
"""

import argparse
import importlib
import pathlib

from google.protobuf import descriptor_pb2

# wandb module -> our file name.  Order matters only for readability.
FILES = {
    "wandb_base_pb2": "base.proto",
    "wandb_telemetry_pb2": "telemetry.proto",
    "wandb_internal_pb2": "internal.proto",
    "wandb_settings_pb2": "settings.proto",
    "wandb_otel_pb2": "otel.proto",
    "wandb_api_pb2": "api.proto",
    "wandb_sync_pb2": "sync.proto",
    "wandb_sweep_scheduler_pb2": "sweep_scheduler.proto",
    "wandb_server_pb2": "server.proto",
}

SCALARS = {
    descriptor_pb2.FieldDescriptorProto.TYPE_DOUBLE: "double",
    descriptor_pb2.FieldDescriptorProto.TYPE_FLOAT: "float",
    descriptor_pb2.FieldDescriptorProto.TYPE_INT64: "int64",
    descriptor_pb2.FieldDescriptorProto.TYPE_UINT64: "uint64",
    descriptor_pb2.FieldDescriptorProto.TYPE_INT32: "int32",
    descriptor_pb2.FieldDescriptorProto.TYPE_FIXED64: "fixed64",
    descriptor_pb2.FieldDescriptorProto.TYPE_FIXED32: "fixed32",
    descriptor_pb2.FieldDescriptorProto.TYPE_BOOL: "bool",
    descriptor_pb2.FieldDescriptorProto.TYPE_STRING: "string",
    descriptor_pb2.FieldDescriptorProto.TYPE_BYTES: "bytes",
    descriptor_pb2.FieldDescriptorProto.TYPE_UINT32: "uint32",
    descriptor_pb2.FieldDescriptorProto.TYPE_SFIXED32: "sfixed32",
    descriptor_pb2.FieldDescriptorProto.TYPE_SFIXED64: "sfixed64",
    descriptor_pb2.FieldDescriptorProto.TYPE_SINT32: "sint32",
    descriptor_pb2.FieldDescriptorProto.TYPE_SINT64: "sint64",
}
F = descriptor_pb2.FieldDescriptorProto


def type_name(field):
    if field.type in (F.TYPE_MESSAGE, F.TYPE_ENUM):
        return field.type_name  # fully qualified, leading dot
    return SCALARS[field.type]


def map_entries(msg):
    return {n.name: n for n in msg.nested_type if n.options.map_entry}


def field_line(field, entries):
    if field.label == F.LABEL_REPEATED and field.type == F.TYPE_MESSAGE:
        entry_name = field.type_name.rsplit(".", 1)[-1]
        if entry_name in entries:
            k, v = entries[entry_name].field
            return f"map<{type_name(k)}, {type_name(v)}> {field.name} = {field.number}{json_option(field)};"
    prefix = ""
    if field.label == F.LABEL_REPEATED:
        prefix = "repeated "
    elif field.proto3_optional:
        prefix = "optional "
    return f"{prefix}{type_name(field)} {field.name} = {field.number}{json_option(field)};"


def json_option(field):
    # Explicit JSON names (e.g. `gpu_type` is "gpu" in wandb-metadata.json)
    # change the JSON mapping, so they are part of what we must match.
    if field.HasField("json_name"):
        return f' [json_name = "{field.json_name}"]'
    return ""


def ranges(rs):
    out = []
    for r in rs:
        out.append(str(r.start) if r.end == r.start + 1 else f"{r.start} to {r.end - 1}")
    return ", ".join(out)


def emit_enum(enum, indent, out):
    pad = "  " * indent
    out.append(f"{pad}enum {enum.name} {{")
    for v in enum.value:
        out.append(f"{pad}  {v.name} = {v.number};")
    out.append(f"{pad}}}")


def emit_message(msg, indent, out):
    pad = "  " * indent
    entries = map_entries(msg)
    out.append(f"{pad}message {msg.name} {{")
    if msg.reserved_range:
        out.append(f"{pad}  reserved {ranges(msg.reserved_range)};")
    if msg.reserved_name:
        names = ", ".join(f'"{n}"' for n in msg.reserved_name)
        out.append(f"{pad}  reserved {names};")
    # Real oneofs in declaration order; proto3 `optional` creates synthetic ones.
    real_oneofs = {}
    for f in msg.field:
        if f.HasField("oneof_index") and not f.proto3_optional:
            real_oneofs.setdefault(f.oneof_index, []).append(f)
    emitted = set()
    for f in msg.field:
        if f.HasField("oneof_index") and not f.proto3_optional:
            if f.oneof_index in emitted:
                continue
            emitted.add(f.oneof_index)
            out.append(f"{pad}  oneof {msg.oneof_decl[f.oneof_index].name} {{")
            for g in real_oneofs[f.oneof_index]:
                out.append(f"{pad}    {field_line(g, entries)}")
            out.append(f"{pad}  }}")
        else:
            out.append(f"{pad}  {field_line(f, entries)}")
    for n in msg.nested_type:
        if not n.options.map_entry:
            emit_message(n, indent + 1, out)
    for e in msg.enum_type:
        emit_enum(e, indent + 1, out)
    out.append(f"{pad}}}")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default=str(pathlib.Path(__file__).parent))
    args = ap.parse_args()
    import wandb

    ours = {}
    protos = {}
    for mod, name in FILES.items():
        fd = importlib.import_module("wandb.proto." + mod).DESCRIPTOR
        p = descriptor_pb2.FileDescriptorProto()
        fd.CopyToProto(p)
        protos[name] = p
        ours[p.name] = name

    for name, p in protos.items():
        out = [
            f"// wandb-core-rs wire schema: {name[:-6]} messages.",
            f"// Derived from the descriptors of wandb {wandb.__version__} by generate.py;",
            "// keep in sync by regenerating, tests/schema_compat.rs checks it.",
            "",
            'syntax = "proto3";',
            "",
            f"package {p.package};",
            "",
        ]
        for dep in p.dependency:
            out.append(f'import "{ours.get(dep, dep)}";')
        if p.dependency:
            out.append("")
        for m in p.message_type:
            emit_message(m, 0, out)
            out.append("")
        for e in p.enum_type:
            emit_enum(e, 0, out)
            out.append("")
        path = pathlib.Path(args.out) / name
        path.write_text("\n".join(out).rstrip() + "\n")
        print(f"wrote {path}")


if __name__ == "__main__":
    main()

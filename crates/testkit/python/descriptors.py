#!/usr/bin/env python3
"""Writes the protobuf descriptors the installed wandb package uses on the
wire, as an encoded google.protobuf.FileDescriptorSet, to the path given.

    python descriptors.py OUT_FILE

The schema test compares our own .proto files against it.
"""

import importlib
import pkgutil
import sys

from google.protobuf import descriptor_pb2


def main():
    import wandb.proto as proto_pkg

    fds = descriptor_pb2.FileDescriptorSet()
    seen = set()

    def add(fd):
        if fd.name in seen:
            return
        for dep in fd.dependencies:
            add(dep)
        seen.add(fd.name)
        fd.CopyToProto(fds.file.add())

    # The package's top-level *_pb2 modules are the ones matching the
    # installed protobuf runtime (the v5/v6/... folders are alternatives).
    for mod in pkgutil.iter_modules(proto_pkg.__path__):
        if mod.name.endswith("_pb2"):
            add(importlib.import_module(f"wandb.proto.{mod.name}").DESCRIPTOR)
    with open(sys.argv[1], "wb") as f:
        f.write(fds.SerializeToString())


if __name__ == "__main__":
    main()

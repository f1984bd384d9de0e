#!/usr/bin/env python3
"""Produces reference transaction logs with the real wandb SDK and W&B's own
wandb-core (the one inside the installed wandb package), offline.

    python scenarios.py OUT_DIR [SCENARIO...]

runs every scenario (or the ones named) in its own process (so each launches and owns its own
service, as a user's script does), then reads every `.wandb` file with an
independent reader written from the format description (zlib CRC-32, the
package's own protobuf classes) and writes OUT_DIR/manifest.json:

    {"wandb_version": ..., "runs": [{"scenario", "path" (relative to OUT_DIR),
      "size", "records",
      "counts": {record type: n}, "chunks": {"full": n, "first": n, ...},
      "nums": [first, last], "nums_consecutive": bool}]}

Rust tests compare their own reading of the same files against it.
"""

import concurrent.futures
import json
import os
import pathlib
import struct
import subprocess
import sys
import zlib

BLOCK = 32768


# --- scenarios (each runs in a fresh interpreter) --------------------------


def scenario_basic(wandb):
    run = wandb.init(project="compat", config={"lr": 0.01, "layers": [64, 32], "opt": {"name": "adam"}})
    run.define_metric("loss", summary="min")
    for step in range(20):
        run.log({"loss": 1.0 / (step + 1), "acc": step / 20.0, "epoch": step // 5})
    run.summary["best"] = 0.05
    run.config.update({"late": True})
    run.finish()


def scenario_step_commit(wandb):
    run = wandb.init(project="compat")
    run.define_metric("epoch")
    run.define_metric("val/*", step_metric="epoch", summary="max,mean")
    run.log({"loss": 0.9, "lr": 0.1}, step=0)
    run.log({"acc": 0.1}, step=0)
    run.log({"loss": 0.8, "nested": {"inner": 1, "deep": {"v": 2.5}}}, step=1)
    run.log({"lr": 0.05}, commit=False)
    run.log({"epoch": 2, "big": 2**70, "small": 1.5e-05, "text": "hi", "flag": True, "none": None})
    run.log({"val/loss": 0.3})
    run.log({"late": 1}, step=10)
    run.log({"dropped": 1}, step=5)
    run.log({"pending": 1}, step=12, commit=False)
    run.summary.update({"loss": 0.0001})
    run.name = "renamed"
    run.tags = ["a", "b"]
    run.finish()


def scenario_large(wandb):
    # Records larger than one 32 KiB block: FIRST, MIDDLE…, LAST chunks.
    run = wandb.init(project="compat", config={"blob": "c" * 70_000}, settings=wandb.Settings(x_history_value_encoding="json,typed"))
    run.log({"text": "x" * 100_000})
    run.log({"huge": "y" * 200_000, "n": 1})
    run.summary["note"] = "z" * 40_000
    run.finish()


def scenario_many_rows(wandb):
    # Thousands of records of varying size cross block boundaries at many
    # different positions.
    run = wandb.init(project="compat")
    for step in range(3000):
        row = {f"m{k}": step * 0.001 * k for k in range(step % 13)}
        row["tag"] = "t" * (step % 97)
        run.log(row)
    run.finish()


def scenario_console(wandb):
    run = wandb.init(project="compat", settings=wandb.Settings(console="wrap"))
    print("hello stdout line 1")
    print("progress\rprogress 50%\rprogress 100%")
    print("hello stderr", file=sys.stderr)
    run.alert(title="done", text="console scenario")
    run.finish()


def scenario_crash(wandb):
    # No finish(): the SDK's atexit hook tears the service down with exit
    # code 1 and the service writes the exit record itself.
    run = wandb.init(project="compat")
    run.log({"before_crash": 1})
    raise SystemExit(1)


def scenario_two_runs(wandb):
    for i in range(2):
        run = wandb.init(project="compat", reinit="finish_previous")
        run.log({"i": i})
        run.finish()


SCENARIOS = {name[len("scenario_"):]: fn for name, fn in globals().items() if name.startswith("scenario_")}


# --- an independent reader --------------------------------------------------


def read_log(path):
    from wandb.proto import wandb_internal_pb2

    data = pathlib.Path(path).read_bytes()
    assert data[:4] == b":W&B", "ident"
    assert struct.unpack("<H", data[4:6])[0] == 0xBEE1, "magic"
    assert data[6] == 0, "version"
    pos = 7
    chunks = {"full": 0, "first": 0, "middle": 0, "last": 0}
    names = {1: "full", 2: "first", 3: "middle", 4: "last"}
    records = []
    pending = None
    while pos < len(data):
        left = BLOCK - pos % BLOCK
        if left < 7:
            assert data[pos : pos + left].strip(b"\0") == b"", f"non-zero padding at {pos}"
            pos += left
            continue
        crc, length, kind = struct.unpack("<IHB", data[pos : pos + 7])
        payload = data[pos + 7 : pos + 7 + length]
        assert len(payload) == length, f"short chunk at {pos}"
        assert zlib.crc32(payload, zlib.crc32(bytes([kind]))) == crc, f"crc at {pos}"
        chunks[names[kind]] += 1
        if kind == 1:
            assert pending is None
            records.append(payload)
        elif kind == 2:
            assert pending is None
            pending = payload
        elif kind == 3:
            pending += payload
        else:
            records.append(pending + payload)
            pending = None
        pos += 7 + length
    assert pending is None, "torn record"
    counts = {}
    nums = []
    for raw in records:
        rec = wandb_internal_pb2.Record.FromString(raw)
        kind = rec.WhichOneof("record_type")
        counts[kind] = counts.get(kind, 0) + 1
        nums.append(rec.num)
    return {
        "size": len(data),
        "records": len(records),
        "counts": counts,
        "chunks": chunks,
        "nums": [nums[0], nums[-1]] if nums else [],
        "nums_consecutive": nums == list(range(1, len(nums) + 1)),
    }


# --- driver -----------------------------------------------------------------


def run_one(out, name):
    work = out / name
    work.mkdir(parents=True, exist_ok=True)
    env = dict(os.environ)
    env.pop("WANDB_SERVICE", None)  # the SDK must launch (and own) its service
    env.update(
        WANDB_MODE="offline",
        WANDB_DIR=str(work),
        WANDB_SILENT="true",
        WANDB_DISABLE_GIT="true",
        WANDB_CONFIG_DIR=str(work / "config"),
        WANDB_CACHE_DIR=str(work / "cache"),
        WANDB_DATA_DIR=str(work / "data"),
        HOME=str(work),
    )
    proc = subprocess.run(
        [sys.executable, __file__, "--scenario", name],
        cwd=work,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    expected_rc = 1 if name == "crash" else 0
    if proc.returncode != expected_rc:
        raise RuntimeError(f"scenario {name} exited {proc.returncode}:\n{proc.stdout}\n{proc.stderr}")
    logs = sorted((work / "wandb").glob("offline-run-*/run-*.wandb"))
    if not logs:
        raise RuntimeError(f"scenario {name} wrote no .wandb file")
    return [dict(scenario=name, path=str(p.relative_to(out)), **read_log(p)) for p in logs]


def main():
    if len(sys.argv) == 3 and sys.argv[1] == "--scenario":
        import wandb

        SCENARIOS[sys.argv[2]](wandb)
        return
    import wandb

    out = pathlib.Path(sys.argv[1]).resolve()
    out.mkdir(parents=True, exist_ok=True)
    names = sys.argv[2:] or list(SCENARIOS)
    unknown = [n for n in names if n not in SCENARIOS]
    if unknown:
        sys.exit(f"unknown scenarios {unknown}; known: {list(SCENARIOS)}")
    with concurrent.futures.ThreadPoolExecutor(max_workers=3) as pool:
        results = list(pool.map(lambda n: run_one(out, n), names))
    runs = [r for rs in results for r in rs]
    manifest = {"wandb_version": wandb.__version__, "runs": runs}
    (out / "manifest.json").write_text(json.dumps(manifest, indent=1))


if __name__ == "__main__":
    main()

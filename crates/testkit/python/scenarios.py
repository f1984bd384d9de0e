#!/usr/bin/env python3
"""Runs real wandb scripts offline and describes the run directories they
leave, so that Rust tests can compare a service with W&B's own.

    python scenarios.py OUT_DIR [--python PY] [--service TOKEN] [--phase P] [SCENARIO...]

runs every scenario (or the ones named), each in its own process with the
interpreter PY (default: this one). Without --service each process launches
and owns its service, as a user's script does (the wandb package's
`bin/wandb-core`); with --service it attaches to the service TOKEN names
through WANDB_SERVICE. Every `.wandb` file is then read with an independent
reader written from the format description (zlib CRC-32, the package's own
protobuf classes) and OUT_DIR/manifest.json describes each run:

    {"wandb_version": ..., "runs": [{
      "scenario", "path" (relative to OUT_DIR), "rc" (the script's exit code),
      "size", "records", "counts": {record type: n},
      "chunks": {"full": n, "first": n, "middle": n, "last": n},
      "nums_consecutive": bool,
      "history": [{leaf path: value}], "summary": {leaf path: value},
      "config": {key: value}, "exit_codes": [..], "output_log": text or null,
      "requirements": text or null, "header_producer": str,
      "config_yaml": files/config.yaml as PyYAML reads it, or null}]}

Values are JSON; non-finite floats become the strings "NaN", "Infinity",
"-Infinity".
"""

import argparse
import concurrent.futures
import json
import math
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
    run.define_metric("hidden_metric", summary="none")
    run.log({"loss": 0.9, "lr": 0.1}, step=0)
    run.log({"acc": 0.1}, step=0)
    run.log({"loss": 0.8, "nested": {"inner": 1, "deep": {"v": 2.5}}}, step=1)
    run.log({"lr": 0.05}, commit=False)
    run.log({"epoch": 2, "big": 2**70, "small": 1.5e-05, "text": "hi", "flag": True, "none": None})
    run.log({"val/loss": 0.3, "hidden_metric": 1, "inf": float("inf"), "nan": float("nan")})
    run.log({"val/loss": 0.1})
    run.log({"late": 1}, step=10)
    run.log({"dropped": 1}, step=5)
    run.log({"pending": 1}, step=12, commit=False)
    assert run.step == 12, run.step
    assert run.summary["late"] == 1
    run.summary.update({"loss": 0.0001})
    run.name = "renamed"
    run.tags = ["a", "b"]
    run.finish()


def scenario_large(wandb):
    # Records larger than one 32 KiB block: FIRST, MIDDLE…, LAST chunks.
    # (SDKs before 0.31 have no x_history_value_encoding setting.)
    typed = "x_history_value_encoding" in wandb.Settings.model_fields
    settings = wandb.Settings(x_history_value_encoding="json,typed") if typed else None
    run = wandb.init(project="compat", config={"blob": "c" * 70_000}, settings=settings)
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
    for i in range(0, 101, 20):
        sys.stdout.write(f"\rtraining: {i:3d}%|{'#' * (i // 10):10s}|")
        sys.stdout.flush()
    sys.stdout.write("\n")
    print("partial line without newline ...", end="", flush=True)
    print("completed")
    # What the service answers to the status requests, in the output.
    # (run.status() waits without a deadline; its request, with one.)
    # (In older SDKs, e.g. 0.22, the run's interface is its backend's.)
    interface = run._interface if hasattr(run, "_interface") else run._backend.interface
    run_status = interface.deliver_request_run_status().wait_or(timeout=30)
    print("run status answer:", run_status.response.WhichOneof("response_type"))
    status = interface.deliver_status().wait_or(timeout=30)
    print("status answer:", status.response.WhichOneof("response_type"))
    run.alert(title="done", text="console scenario")
    run.finish()


def scenario_crash(wandb):
    # No finish(): the SDK's atexit hook tears an owned service down with
    # exit code 1 and the service writes the exit record itself.
    run = wandb.init(project="compat")
    run.log({"before_crash": 1})
    raise SystemExit(1)


def scenario_exception(wandb):
    run = wandb.init(project="compat")
    run.log({"before_exception": 1})
    raise ValueError("an uncaught exception")


def scenario_no_finish(wandb):
    run = wandb.init(project="compat")
    run.log({"a": 1})
    run.log({"a": 2})


def scenario_two_runs(wandb):
    for i in range(2):
        run = wandb.init(project="compat", reinit="finish_previous", config={"i": i})
        run.log({"i": i})
        run.finish()


def scenario_media(wandb):
    import numpy as np

    run = wandb.init(project="compat")
    pixels = (np.arange(16 * 16 * 3, dtype=np.uint8).reshape(16, 16, 3) * 7) % 255
    run.log({"img": wandb.Image(pixels, caption="pattern")})
    run.log({"tbl": wandb.Table(columns=["a", "b", "c"], data=[[1, 2, "x"], [3, 4, "y"]]), "scalar": 1})
    run.finish()


def _child_logs(run):
    run.log({"child": 1})
    run.log({"child": 2})


def scenario_multiproc(wandb):
    import multiprocessing as mp

    run = wandb.init(project="compat")
    run.log({"parent": 0})
    child = mp.get_context("spawn").Process(target=_child_logs, args=(run,))
    child.start()
    child.join()
    assert child.exitcode == 0, child.exitcode
    run.log({"parent": 1})
    run.finish()


def _resume_part(wandb):
    run = wandb.init(project="compat", id="resumefixed1", resume="allow")
    run.log({"x": 1})
    run.finish()


def scenario_resume(wandb):
    for _ in range(2):
        subprocess.run([sys.executable, __file__, "--part", "resume"], check=True)


def _shared_worker(i):
    import wandb

    run = wandb.init(project="compat", config={"worker": i})
    for s in range(300):
        run.log({"w": i, "s": s})
    run.finish()


def scenario_shared8(wandb):
    # Eight processes logging at once (to one service under --service).
    import multiprocessing as mp

    ctx = mp.get_context("spawn")
    procs = [ctx.Process(target=_shared_worker, args=(i,)) for i in range(8)]
    for p in procs:
        p.start()
    for p in procs:
        p.join()
        assert p.exitcode == 0, p.exitcode


def scenario_fork(wandb):
    # A branch point on another metric than _step is refused.
    try:
        wandb.init(project="compat", id="forked2", fork_from="parent1?loss=3")
        refused = "not refused"
    except Exception as e:
        refused = f"{type(e).__name__}: {e}"
    # A fork's rows start one step past the branch point.
    run = wandb.init(project="compat", id="forked1", fork_from="parent1?_step=10")
    print("bad branch point:", refused)
    for i in range(3):
        run.log({"a": i})
    run.finish()


def scenario_values(wandb):
    # Values and keys that are easy to get wrong: YAML 1.1 look-alikes as
    # config keys and values, NaN and infinities, nested metric names,
    # `_wandb` entries from the SDK, coloured console output.
    run = wandb.init(
        project="compat",
        config={
            "True": 1, "NULL": 2, "Yes": "yes", "0x1F": 3, "1_000": 4, "2024-01-01": 5,
            "plain": "on", "date": "2024-01-01", "t": "True", "n": "null", "empty": "",
            "nan": float("nan"), "inf": float("inf"), "version": "0.31.0", "nested": {"no": "off", "list": [1, "2", None]},
        },
    )
    run.define_metric("a.b", summary="min")
    run.define_metric("m", summary="min,max,mean")
    for i in range(3):
        run.log({"a": {"b": 1.0 / (i + 1)}, "m": float("nan") if i == 1 else i, "inf": float("-inf")})
    run.summary["x"] = float("nan")
    run.summary["y"] = float("-inf")
    run.summary["z"] = 1
    run.summary["z"] = None
    if hasattr(run, "pin_config_keys"):  # (not in older SDKs, e.g. 0.22)
        run.pin_config_keys(["True", "version"])
    print("\x1b[32mgreen\x1b[0m and \x1b[1;31mbold red\x1b[m")
    print("\x1b[33mprogress 1\x1b[0m\r\x1b[33mprogress 2\x1b[0m")
    run.finish()


SCENARIOS = {name[len("scenario_"):]: fn for name, fn in globals().items() if name.startswith("scenario_")}
PARTS = {"resume": _resume_part}
EXPECTED_RC = {"crash": 1, "exception": 1}


# --- an independent reader --------------------------------------------------


def finite(v):
    if isinstance(v, float) and not math.isfinite(v):
        return "NaN" if math.isnan(v) else ("Infinity" if v > 0 else "-Infinity")
    if isinstance(v, list):
        return [finite(x) for x in v]
    if isinstance(v, dict):
        return {k: finite(x) for k, x in v.items()}
    return v


def as_read(v):
    """A YAML document as JSON, keeping what a reader got wrong visible:
    keys that are not strings and values that are not JSON (dates) become
    their repr."""
    if isinstance(v, dict):
        return {k if isinstance(k, str) else repr(k): as_read(x) for k, x in v.items()}
    if isinstance(v, list):
        return [as_read(x) for x in v]
    if v is None or isinstance(v, (str, bool, int, float)):
        return finite(v)
    return repr(v)


def path_of(item):
    return ".".join(item.nested_key) if item.nested_key else item.key


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

    counts, nums, history, summary, config, exit_codes = {}, [], [], {}, {}, []
    producer = ""
    for raw in records:
        rec = wandb_internal_pb2.Record.FromString(raw)
        kind = rec.WhichOneof("record_type")
        counts[kind] = counts.get(kind, 0) + 1
        nums.append(rec.num)
        if kind == "history":
            history.append({path_of(i): finite(json.loads(i.value_json)) for i in rec.history.item})
        elif kind == "summary":
            for i in rec.summary.update:
                summary[path_of(i)] = finite(json.loads(i.value_json))
            for i in rec.summary.remove:
                summary.pop(path_of(i), None)
        elif kind in ("run", "config"):
            cfg = rec.run.config if kind == "run" else rec.config
            for i in cfg.update:
                config[path_of(i)] = finite(json.loads(i.value_json))
            for i in cfg.remove:
                config.pop(path_of(i), None)
        elif kind == "exit":
            exit_codes.append(rec.exit.exit_code)
        elif kind == "header":
            producer = rec.header.version_info.producer
    run_dir = pathlib.Path(path).parent

    def text(name):
        p = run_dir / "files" / name
        # Tracebacks name this script, wherever the caller put it.
        return p.read_text().replace(str(pathlib.Path(__file__).resolve().parent), "<scripts>") if p.exists() else None

    yaml_path = run_dir / "files" / "config.yaml"
    config_yaml = None
    if yaml_path.exists():
        import yaml

        config_yaml = as_read(yaml.safe_load(yaml_path.read_text()))

    return {
        "config_yaml": config_yaml,
        "size": len(data),
        "records": len(records),
        "counts": counts,
        "chunks": chunks,
        "nums_consecutive": nums == list(range(1, len(nums) + 1)),
        "history": history,
        "summary": summary,
        "config": config,
        "exit_codes": exit_codes,
        "output_log": text("output.log"),
        "requirements": text("requirements.txt"),
        "header_producer": producer,
    }


# --- driver -----------------------------------------------------------------


def run_one(out, name, python, service):
    """Runs a scenario's script; records its exit code in the work dir."""
    work = out / name
    work.mkdir(parents=True, exist_ok=True)
    env = dict(os.environ)
    env.pop("WANDB_SERVICE", None)
    if service:
        env["WANDB_SERVICE"] = service
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
        [python, __file__, "--scenario", name],
        cwd=work,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    (work / "rc.txt").write_text(str(proc.returncode))
    expected_rc = EXPECTED_RC.get(name, 0)
    if proc.returncode != expected_rc:
        raise RuntimeError(f"scenario {name} exited {proc.returncode}, expected {expected_rc}:\n{proc.stdout}\n{proc.stderr}")


def read_one(out, name):
    """Describes the runs a scenario left (after its service finished them)."""
    work = out / name
    rc = int((work / "rc.txt").read_text())
    logs = sorted((work / "wandb").glob("offline-run-*/run-*.wandb"))
    if not logs:
        raise RuntimeError(f"scenario {name} wrote no .wandb file")
    runs = [dict(scenario=name, path=str(p.relative_to(out)), rc=rc, **read_log(p)) for p in logs]

    # A stable order: by worker, then by when the run logged first.
    def key(r):
        first_ts = r["history"][0].get("_timestamp", 0) if r["history"] else 0
        return (str(r["config"].get("worker", "")), first_ts, r["path"])

    return sorted(runs, key=key)


def main():
    if len(sys.argv) == 3 and sys.argv[1] in ("--scenario", "--part"):
        import wandb

        table = SCENARIOS if sys.argv[1] == "--scenario" else PARTS
        table[sys.argv[2]](wandb)
        return
    ap = argparse.ArgumentParser()
    ap.add_argument("out")
    ap.add_argument("--python", default=sys.executable)
    ap.add_argument("--service", default=None)
    ap.add_argument(
        "--phase",
        choices=["all", "run", "read"],
        default="all",
        help="run the scripts, read the logs, or both (with --service, stop the service between the two)",
    )
    ap.add_argument("names", nargs="*")
    args = ap.parse_args()
    import wandb

    out = pathlib.Path(args.out).resolve()
    out.mkdir(parents=True, exist_ok=True)
    names = args.names or list(SCENARIOS)
    unknown = [n for n in names if n not in SCENARIOS]
    if unknown:
        sys.exit(f"unknown scenarios {unknown}; known: {list(SCENARIOS)}")
    if args.phase in ("all", "run"):
        with concurrent.futures.ThreadPoolExecutor(max_workers=3) as pool:
            list(pool.map(lambda n: run_one(out, n, args.python, args.service), names))
    if args.phase == "run":
        return
    runs = [r for n in names for r in read_one(out, n)]
    manifest = {"wandb_version": wandb.__version__, "runs": runs}
    (out / "manifest.json").write_text(json.dumps(manifest, indent=1, allow_nan=False))


if __name__ == "__main__":
    main()

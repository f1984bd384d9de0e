"""Reads what `wandb-core export` wrote with pyarrow, csv and json, and
checks every row and column against what log_runs.py logged:

    python check.py EXPECTED_JSON OUT_DIR

OUT_DIR holds the export of the wandb directory (both runs) as
h.parquet / h.csv / h.jsonl with their `.runs.` siblings, and the first
run alone as one.parquet. Prints every mismatch; exits 1 if there is any.
"""

import csv
import json
import math
import sys
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

IMAGE = "<image>"
WANDB_COLS = {"_runtime", "_timestamp"}
problems = []


def bad(msg):
    problems.append(msg)
    if len(problems) <= 60:
        print("MISMATCH:", msg)


def same(exp, got):
    if isinstance(exp, float) and math.isnan(exp):
        return isinstance(got, float) and math.isnan(got)
    if isinstance(exp, bool) or isinstance(got, bool):
        return type(exp) is type(got) and exp == got
    if isinstance(exp, (int, float)) and isinstance(got, (int, float)):
        return exp == got
    if isinstance(exp, list) and isinstance(got, list):
        return len(exp) == len(got) and all(same(a, b) for a, b in zip(exp, got))
    if isinstance(exp, dict) and isinstance(got, dict):
        return exp.keys() == got.keys() and all(same(exp[k], got[k]) for k in exp)
    return exp == got


def is_image(text_or_obj):
    obj = json.loads(text_or_obj) if isinstance(text_or_obj, str) else text_or_obj
    return isinstance(obj, dict) and obj.get("_type") == "image-file" and obj.get("path", "").endswith(".png")


# Column types the Parquet file must have: integral floats are integers in
# the log (wandb-core writes 7.0 as 7), so `whole` is int64.
TYPES = {
    "_step": pa.int64(), "epoch": pa.int64(), "count": pa.int64(), "whole": pa.int64(),
    "sparse": pa.int64(), "nested.a": pa.int64(), "second_only": pa.int64(),
    "loss": pa.float64(), "big": pa.float64(), "nested.b.c": pa.float64(), "inf": pa.float64(),
    "acc_part2": pa.float64(), "_runtime": pa.float64(), "_timestamp": pa.float64(),
    "flag": pa.bool_(), "acc_done": pa.bool_(),
    "name": pa.string(), "after": pa.string(), "mixed": pa.string(), "list": pa.string(), "img": pa.string(),
}
JSON_COLS = {"mixed", "list", "img"}


def check_parquet_history(path, runs, with_run_id):
    table = pq.read_table(path)
    cols = table.column_names
    lead = ["run_id", "_step"] if with_run_id else ["_step"]
    if cols[: len(lead)] != lead:
        bad(f"{path.name}: columns start {cols[:3]}, expected {lead}")
    keys = set().union(*(set(r) for run in runs for r in run["rows"])) | WANDB_COLS
    if with_run_id:
        keys.add("run_id")
    if set(cols) != keys:
        bad(f"{path.name}: columns {sorted(set(cols) ^ keys)} differ (extra or missing)")
    json_cols = {f.name for f in table.schema if f.metadata and f.metadata.get(b"wandb.type") == b"json"}
    for name, ty in TYPES.items():
        if name in cols and table.schema.field(name).type != ty:
            bad(f"{path.name}: {name} is {table.schema.field(name).type}, expected {ty}")
    if json_cols != (JSON_COLS & set(cols)):
        bad(f"{path.name}: JSON columns {sorted(json_cols)}, expected {sorted(JSON_COLS & set(cols))}")
    rows = table.to_pylist()
    at = 0
    for run in runs:
        got_rows = rows[at : at + len(run["rows"])]
        at += len(run["rows"])
        if len(got_rows) != len(run["rows"]):
            bad(f"{path.name}: run {run['id']}: {len(got_rows)} rows, expected {len(run['rows'])}")
        for i, (exp_row, got_row) in enumerate(zip(run["rows"], got_rows)):
            where = f"{path.name} run {run['id']} row {i} (step {exp_row['_step']})"
            if with_run_id and got_row["run_id"] != run["id"]:
                bad(f"{where}: run_id {got_row['run_id']!r}")
            for col in cols:
                if col == "run_id":
                    continue
                got = got_row[col]
                if col in WANDB_COLS:
                    if not isinstance(got, float) or not math.isfinite(got):
                        bad(f"{where}: {col} = {got!r}")
                    continue
                exp = exp_row.get(col)
                if exp == IMAGE:
                    ok = isinstance(got, str) and is_image(got)
                elif exp is None:
                    ok = got is None
                elif col in json_cols:
                    ok = isinstance(got, str) and same(exp, json.loads(got))
                else:
                    ok = same(exp, got)
                if not ok:
                    bad(f"{where}: {col} = {got!r}, expected {exp!r}")
    if at != len(rows):
        bad(f"{path.name}: {len(rows)} rows, expected {at}")
    return table


def expected_summary(run):
    summary = {}
    for row in run["rows"]:
        summary.update(row)
    summary.update(run["summary"])
    return summary


def flat(d, prefix):
    out = {}
    for k, v in d.items():
        if isinstance(v, dict) and v:
            out.update(flat(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = v
    return out


def check_parquet_runs(path, runs, history_meta):
    table = pq.read_table(path)
    rows = {r["run_id"]: r for r in table.to_pylist()}
    json_cols = {f.name for f in table.schema if f.metadata and f.metadata.get(b"wandb.type") == b"json"}
    if any(c.startswith("config._wandb") for c in table.column_names):
        bad(f"{path.name}: config._wandb columns present")
    meta = {r["run_id"]: r for r in json.loads(history_meta[b"wandb.runs"])}
    for run in runs:
        row = rows.get(run["id"])
        if row is None:
            bad(f"{path.name}: no row for run {run['id']}")
            continue
        where = f"{path.name} run {run['id']}"
        for col, exp in [("state", "finished"), ("exit_code", 0), ("history_rows", len(run["rows"])), ("project", "export")]:
            if row[col] != exp:
                bad(f"{where}: {col} = {row[col]!r}, expected {exp!r}")
        checks = dict(flat(run["config"], "config."))
        for k, v in expected_summary(run).items():
            if k not in WANDB_COLS and v is not None and v != IMAGE:
                checks[f"summary.{k}"] = v
        for col, exp in checks.items():
            got = row.get(col)
            if col in json_cols and isinstance(got, str):
                got = json.loads(got)
            if not same(exp, got):
                bad(f"{where}: {col} = {got!r}, expected {exp!r}")
        m = meta.get(run["id"], {})
        for k, v in run["config"].items():
            if not same(v, m.get("config", {}).get(k)):
                bad(f"{where}: metadata config {k} = {m.get('config', {}).get(k)!r}, expected {v!r}")
        for k, v in run["summary"].items():
            node = m.get("summary", {})
            for part in k.split("."):
                node = node.get(part) if isinstance(node, dict) else None
            if not same(v, node):
                bad(f"{where}: metadata summary {k} = {node!r}, expected {v!r}")
    if rows.get(runs[0]["id"], {}).get("tags") != '["t1","t2"]':
        bad(f"{path.name}: tags {rows.get(runs[0]['id'], {}).get('tags')!r}")
    if len(runs) > 1 and rows.get(runs[1]["id"], {}).get("name") != "second":
        bad(f"{path.name}: name of the second run")


def check_csv(path, runs, table):
    cols = table.column_names
    ints = {f.name for f in table.schema if f.type == pa.int64()}
    json_cols = {f.name for f in table.schema if f.metadata and f.metadata.get(b"wandb.type") == b"json"}
    with open(path, newline="", encoding="utf-8") as f:
        reader = csv.DictReader(f)
        if reader.fieldnames != cols:
            bad(f"{path.name}: header {reader.fieldnames}, expected {cols}")
        rows = list(reader)
    got_rows = iter(rows)
    for run in runs:
        for i, exp_row in enumerate(run["rows"]):
            got_row = next(got_rows, None)
            where = f"{path.name} run {run['id']} row {i}"
            if got_row is None:
                bad(f"{where}: missing")
                return
            if got_row["run_id"] != run["id"]:
                bad(f"{where}: run_id {got_row['run_id']!r}")
            for col in cols:
                if col in WANDB_COLS or col == "run_id":
                    continue
                cell, exp = got_row[col], exp_row.get(col)
                try:
                    if exp is None:
                        ok = cell == ""
                    elif exp == IMAGE:
                        ok = is_image(cell)
                    elif col in json_cols:
                        ok = same(exp, json.loads(cell))
                    elif isinstance(exp, bool):
                        ok = cell == ("true" if exp else "false")
                    elif col in ints:
                        ok = int(cell) == exp
                    elif isinstance(exp, (int, float)):
                        ok = same(float(exp), float(cell))
                    else:
                        ok = cell == exp
                except ValueError:
                    ok = False
                if not ok:
                    bad(f"{where}: {col} = {cell!r}, expected {exp!r}")
    if next(got_rows, None) is not None:
        bad(f"{path.name}: more rows than logged")


def check_jsonl(path, runs, table):
    cols = set(table.column_names)
    lines = path.read_text(encoding="utf-8").splitlines()
    at = 0
    for run in runs:
        for i, exp_row in enumerate(run["rows"]):
            where = f"{path.name} run {run['id']} row {i}"
            if at >= len(lines):
                bad(f"{where}: missing")
                return
            got_row = json.loads(lines[at])
            at += 1
            if set(got_row) - cols:
                bad(f"{where}: unknown keys {set(got_row) - cols}")
            if got_row.get("run_id") != run["id"]:
                bad(f"{where}: run_id {got_row.get('run_id')!r}")
            for col in cols - WANDB_COLS - {"run_id"}:
                got, exp = got_row.get(col), exp_row.get(col)
                if isinstance(exp, float) and not math.isfinite(exp):
                    exp = None  # JSON has no NaN or infinity: null
                if exp == IMAGE:
                    ok = is_image(got)
                else:
                    ok = same(exp, got)
                if not ok:
                    bad(f"{where}: {col} = {got!r}, expected {exp!r}")
    if at != len(lines):
        bad(f"{path.name}: {len(lines)} lines, expected {at}")


def check_text_runs(path, runs):
    if path.suffix == ".csv":
        with open(path, newline="", encoding="utf-8") as f:
            rows = list(csv.DictReader(f))
        lr = [float(r["config.lr"]) for r in rows]
    else:
        rows = [json.loads(l) for l in path.read_text(encoding="utf-8").splitlines()]
        lr = [r["config.lr"] for r in rows]
    if [r["run_id"] for r in rows] != [run["id"] for run in runs]:
        bad(f"{path.name}: run IDs {[r['run_id'] for r in rows]}")
    if lr != [run["config"]["lr"] for run in runs]:
        bad(f"{path.name}: config.lr {lr}")


def main():
    expected = json.loads(Path(sys.argv[1]).read_text())
    out = Path(sys.argv[2])
    runs = expected["runs"]
    table = check_parquet_history(out / "h.parquet", runs, True)
    check_parquet_runs(out / "h.runs.parquet", runs, table.schema.metadata)
    check_csv(out / "h.csv", runs, table)
    check_text_runs(out / "h.runs.csv", runs)
    check_jsonl(out / "h.jsonl", runs, table)
    check_text_runs(out / "h.runs.jsonl", runs)
    one = check_parquet_history(out / "one.parquet", runs[:1], False)
    if "run_id" in one.column_names:
        bad("one.parquet: a run_id column for a single run")
    rows = sum(len(r["rows"]) for r in runs)
    if problems:
        print(f"{len(problems)} mismatches")
        sys.exit(1)
    print(f"ok: {rows} rows x {len(table.column_names)} columns in parquet, csv and jsonl")


if __name__ == "__main__":
    main()

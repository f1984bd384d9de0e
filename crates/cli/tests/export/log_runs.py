"""Logs two runs offline with the real SDK (wandb==0.31.0, W&B's own
service), and writes what was logged to expected.json for check.py:

    python log_runs.py EXPECTED_JSON

Every run.log() goes through a small model of the SDK's step and commit
rules (a row is committed by a log() without commit=False, by a larger
step=, or by finish(); a smaller step= is dropped), so the expected
history rows are what the log must hold, key by key. Nested dicts are the
`a.b` columns wandb-core makes of them.
"""

import json
import math
import sys

import numpy as np
import wandb


def flatten(d, prefix=""):
    out = {}
    for k, v in d.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict) and v and "_type" not in v:
            out.update(flatten(v, key + "."))
        else:
            out[key] = v
    return out


class Model:
    """What the history should hold, beside the real run."""

    def __init__(self, run):
        self.run = run
        self.step = 0
        self.pending = {}
        self.rows = []

    def _commit(self):
        if self.pending:
            row = dict(self.pending)
            row["_step"] = self.step
            self.rows.append(row)
        self.pending = {}
        self.step += 1

    def log(self, data, step=None, commit=None, expected=None):
        self.run.log(data, step=step, commit=commit)
        values = flatten(expected if expected is not None else data)
        if step is not None:
            if step < self.step:
                return  # the SDK drops it, with a warning
            if step > self.step:
                if self.pending:
                    self._commit()
                self.step = step
            self.pending.update(values)
            if commit:
                self._commit()
            return
        self.pending.update(values)
        if commit is False:
            return
        self._commit()

    def finish(self):
        if self.pending:
            self._commit()
        self.run.finish()


IMAGE = "<image>"  # check.py: a media dict of _type image-file


def first_run():
    config = {"lr": 0.001, "arch": {"depth": 4, "act": "relu"}, "layers": [64, 32], "seed": 7}
    run = wandb.init(project="export", config=config)
    m = Model(run)
    for i in range(60):
        row = {
            "loss": 1.0 / (i + 1),
            "epoch": i // 10,
            "count": 2**60 + i,
            "name": f's{i}, "q"\nü',
            "flag": i % 2 == 0,
            "whole": float(i),
        }
        if i % 3 == 0:
            row["sparse"] = i * 10
        if i == 7:
            row["loss"] = float("nan")
            row["inf"] = float("inf")
            row["ninf"] = float("-inf")
        if i % 20 == 5:
            row["nested"] = {"a": i, "b": {"c": i + 0.5}}
            row["list"] = [i, "x", None]
        if i == 11:
            row["big"] = 2**70
            row["none"] = None
        m.log(row)
    # An image: its value is a media dict (checked by its _type).
    pixels = np.zeros((4, 4, 3), dtype=np.uint8)
    m.log({"img": wandb.Image(pixels)}, expected={"img": IMAGE})
    # Accumulate, then commit.
    m.log({"acc_part": 1}, commit=False)
    m.log({"acc_part2": 2.5}, commit=False)
    m.log({"acc_done": True})
    # Explicit steps: a jump, the same step again (merged), a smaller
    # step (dropped), commit=True at a step.
    m.log({"jump": 1}, step=100)
    m.log({"jump2": 2}, step=100)
    m.log({"dropped": 3}, step=50)
    m.log({"jump3": 3}, step=101, commit=True)
    m.log({"after": "tail"})
    m.log({"last": 1}, step=200)  # pending until finish
    run.summary["best"] = 0.125
    run.summary["best_dict"] = {"x": 1}
    run.tags = ["t1", "t2"]
    m.finish()
    return run.id, config, {"best": 0.125, "best_dict.x": 1}, m.rows


def second_run():
    config = {"lr": 0.01, "only_second": True}
    run = wandb.init(project="export", config=config, name="second")
    m = Model(run)
    for i in range(25):
        row = {"loss": float(i), "mixed": i if i % 2 else f"m{i}", "second_only": i * 2}
        m.log(row)
    m.finish()
    return run.id, config, {}, m.rows


def main():
    runs = []
    for make in (first_run, second_run):
        run_id, config, summary, rows = make()
        runs.append({"id": run_id, "config": config, "summary": summary, "rows": rows})
    with open(sys.argv[1], "w") as f:
        json.dump({"runs": runs}, f)


if __name__ == "__main__":
    main()

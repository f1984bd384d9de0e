"""A small training loop tracked with the unmodified wandb SDK, offline.

Run by scripts/demo through wandb-core-rs; works the same with W&B's own
service.
"""

import math
import random

import wandb

config = {"lr": 3e-4, "batch_size": 64, "epochs": 5, "model": {"layers": 4, "width": 256}}
run = wandb.init(project="wandb-core-rs-demo", config=config, mode="offline")
run.define_metric("epoch")
run.define_metric("val/*", step_metric="epoch", summary="min")
run.define_metric("train/loss", summary="min,last")

random.seed(0)
steps_per_epoch = 200
for epoch in range(config["epochs"]):
    for i in range(steps_per_epoch):
        step = epoch * steps_per_epoch + i
        loss = 2.0 * math.exp(-step / 300) + 0.05 * random.random()
        run.log({"train/loss": loss, "train/lr": config["lr"] * (1 - step / 1000), "epoch": epoch})
        if i % 50 == 0:
            print(f"\repoch {epoch} [{'#' * (i // 20):10s}] loss {loss:.3f}", end="", flush=True)
    val = 2.0 * math.exp(-(epoch + 1) * steps_per_epoch / 300) + 0.1
    run.log({"val/loss": val, "val/acc": 1 - val / 3, "epoch": epoch})
    print(f"\repoch {epoch} done, val loss {val:.3f}          ")
run.summary["best_val_loss"] = val
run.finish()

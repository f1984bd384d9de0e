#!/usr/bin/env python3
"""Service cost of `run.log` through the real Python SDK, ours beside
W&B's wandb-core, measured in the same invocation on the same workload.

    python bench/sdk_log.py --ours target/release/wandb-core [--rows 100000] [--repeat 3] [--pin]

Each service is started detached (as `wandb beta core start` does), one
offline run logs ROWS rows of 10 scalars through WANDB_SERVICE, then the
service is told to stop; its CPU seconds (user+sys) and peak RSS come from
wait4() on the service process itself, so the client's own cost is not
counted. Runs alternate between the two services. Prints a Markdown table.
"""

import argparse
import os
import pathlib
import statistics
import subprocess
import sys
import tempfile
import threading
import time

WORKLOAD = r"""
import os, time, wandb
rows = int(os.environ["BENCH_ROWS"])
t0 = time.perf_counter()
run = wandb.init(project="bench")
t1 = time.perf_counter()
for i in range(rows):
    run.log({f"m{k}": i * 0.001 + k for k in range(10)})
t2 = time.perf_counter()
run.finish()
t3 = time.perf_counter()
print(f"{t1 - t0} {t2 - t1} {t3 - t2}")
"""


def vm_hwm_kib(pid):
    try:
        for line in open(f"/proc/{pid}/status"):
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


def one(binary, python, rows, pin=False):
    with tempfile.TemporaryDirectory() as tmp:
        tmp = pathlib.Path(tmp)
        port_file = tmp / "port.txt"
        # --pin: service on CPU 1, client on CPU 0, so neither's scheduling
        # shapes the other's figures.
        service_cmd = [binary, "--port-filename", str(port_file), "--detached", "--idle-timeout", "0"]
        client_prefix = []
        if pin:
            service_cmd = ["taskset", "-c", "1"] + service_cmd
            client_prefix = ["taskset", "-c", "0"]
        proc = subprocess.Popen(
            service_cmd,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            env={**os.environ, "WANDB_CACHE_DIR": str(tmp / "cache")},
        )
        while True:
            if port_file.exists():
                text = port_file.read_text()
                if text.endswith("EOF"):
                    break
            time.sleep(0.002)
        socket = text.splitlines()[0].removeprefix("unix=")
        token = f"3-{os.getpid()}-unix-{socket}"
        env = {
            **os.environ,
            "WANDB_SERVICE": token,
            "WANDB_MODE": "offline",
            "WANDB_DIR": str(tmp),
            "WANDB_SILENT": "true",
            "BENCH_ROWS": str(rows),
            "HOME": str(tmp),
        }
        # Peak RSS: the kernel's high-water mark of the service process
        # (wait4's ru_maxrss would include the memory of the forking parent).
        peak_kib = [0]
        stop = threading.Event()

        def sample():
            while not stop.is_set():
                peak_kib[0] = max(peak_kib[0], vm_hwm_kib(proc.pid))
                time.sleep(0.01)

        sampler = threading.Thread(target=sample)
        sampler.start()
        out = subprocess.run(client_prefix + [python, "-c", WORKLOAD], env=env, check=True, capture_output=True, text=True)
        init_s, log_s, finish_s = map(float, out.stdout.split())
        peak_kib[0] = max(peak_kib[0], vm_hwm_kib(proc.pid))
        # Stop: inform_teardown through the SDK's own token handling.
        subprocess.run(
            [python, "-c", "from wandb.cli import beta_core; beta_core.stop()"],
            env=env,
            check=True,
            capture_output=True,
        )
        stop.set()
        sampler.join()
        _, status, usage = os.wait4(proc.pid, 0)
        return {
            "cpu": usage.ru_utime + usage.ru_stime,
            "rss_mib": peak_kib[0] / 1024,
            "logs_per_s": rows / log_s,
            "init_s": init_s,
            "finish_s": finish_s,
        }


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--ours", required=True)
    ap.add_argument("--python", default=sys.executable)
    ap.add_argument("--rows", type=int, default=100_000)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--pin", action="store_true", help="service on CPU 1, client on CPU 0")
    args = ap.parse_args()
    import wandb.util

    theirs = wandb.util.get_core_path()
    if theirs.endswith("wandb-core") and os.path.exists(theirs + ".orig"):
        theirs += ".orig"
    results = {"ours": [], "wandb-core": []}
    for _ in range(args.repeat):
        results["ours"].append(one(args.ours, args.python, args.rows, args.pin))
        results["wandb-core"].append(one(theirs, args.python, args.rows, args.pin))

    def med(name, key):
        return statistics.median(r[key] for r in results[name])

    pinned = ", service and client pinned to separate CPUs" if args.pin else ""
    print(f"{args.rows} run.log calls of 10 scalars, offline, through WANDB_SERVICE; median of {args.repeat}{pinned}")
    print("| figure | wandb-core-rs | wandb-core 0.31.0 | ours/theirs |")
    print("| --- | ---: | ---: | ---: |")
    for key, label in [
        ("cpu", "service CPU seconds"),
        ("rss_mib", "service peak RSS (MiB)"),
        ("logs_per_s", "client logs/s"),
        ("init_s", "init (s)"),
        ("finish_s", "finish (s)"),
    ]:
        a, b = med("ours", key), med("wandb-core", key)
        print(f"| {label} | {a:.3f} | {b:.3f} | {a / b:.3f} |")


if __name__ == "__main__":
    main()

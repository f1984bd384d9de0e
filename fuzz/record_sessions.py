#!/usr/bin/env python3
"""Records what the real SDK sends a service, as the seed corpora of the
fuzz targets.

    python record_sessions.py WANDB_CORE CORPUS_DIR [SCENARIO...]

starts WANDB_CORE (our binary) as a shared service, puts a recording proxy
in front of its socket, runs the offline test scenarios
(crates/testkit/python/scenarios.py) through the proxy with WANDB_SERVICE,
and writes each connection's client-to-service bytes (whole `W` frames) to
CORPUS_DIR/session/<scenario>-<n>. From those it derives the other
targets' seeds: frame/ (the same streams), envelope/ (single frames),
settings/ (the settings of each inform_init), json/ (value_json texts)
and txlog/ (the transaction logs the runs wrote, the small ones). Run it
with the interpreter of a venv holding wandb.
"""

import asyncio
import hashlib
import os
import pathlib
import struct
import subprocess
import sys
import tempfile

HERE = pathlib.Path(__file__).resolve().parent
SCENARIOS = HERE.parent / "crates" / "testkit" / "python" / "scenarios.py"


async def main(binary, corpus, names):
    out = corpus / "session"
    out.mkdir(parents=True, exist_ok=True)
    token = subprocess.run(
        [binary, "start", "--idle-timeout", "60s"], check=True, capture_output=True, text=True, timeout=60
    ).stdout.strip()
    version, pid, kind, target = token.split("-", 3)
    assert kind == "unix", token
    tmp = pathlib.Path(tempfile.mkdtemp())
    proxy_path = tmp / "proxy.sock"
    current = {"name": None, "n": 0}

    async def handle(client_r, client_w):
        current["n"] += 1
        file = out / f"{current['name']}-{current['n']}"
        service_r, service_w = await asyncio.open_unix_connection(target)
        recorded = bytearray()

        async def pump(src, dst, record):
            try:
                while data := await src.read(65536):
                    if record:
                        recorded.extend(data)
                    dst.write(data)
                    await dst.drain()
            except ConnectionError:
                pass
            finally:
                dst.close()

        await asyncio.gather(pump(client_r, service_w, True), pump(service_r, client_w, False))
        if recorded:
            file.write_bytes(bytes(recorded))

    server = await asyncio.start_unix_server(handle, path=str(proxy_path))
    proxy_token = f"{version}-{pid}-unix-{proxy_path}"
    try:
        for name in names:
            current["name"], current["n"] = name, 0
            proc = await asyncio.create_subprocess_exec(
                sys.executable, str(SCENARIOS), "--service", proxy_token, str(tmp / "runs"), name,
                stdout=asyncio.subprocess.DEVNULL,
            )
            try:
                await asyncio.wait_for(proc.wait(), 300)
            except asyncio.TimeoutError:
                proc.kill()
                raise
            await asyncio.sleep(0.5)  # let the proxy write the last bytes
    finally:
        server.close()
        subprocess.run([binary, "stop"], env={**os.environ, "WANDB_SERVICE": token}, timeout=60)
    derive(corpus, tmp / "runs")


def frames(data):
    at = 0
    while at + 5 <= len(data):
        (length,) = struct.unpack("<I", data[at + 1 : at + 5])
        yield data[at + 5 : at + 5 + length]
        at += 5 + length


def derive(corpus, runs):
    from wandb.proto import wandb_server_pb2 as spb

    seen = {"envelope": set(), "settings": set(), "json": set()}
    for name in ["frame", "txlog", *seen]:
        (corpus / name).mkdir(parents=True, exist_ok=True)

    def keep(target, data):
        digest = hashlib.sha1(data).hexdigest()[:16]
        (corpus / target / digest).write_bytes(data)

    for session in sorted((corpus / "session").iterdir()):
        data = session.read_bytes()
        keep("frame", data)
        for payload in frames(data):
            kind = spb.ServerRequest.FromString(payload)
            which = kind.WhichOneof("server_request_type")
            record = kind.record_publish if which == "record_publish" else kind.record_communicate
            # One envelope per kind of request or record, not every row.
            label = (which, record.WhichOneof("record_type"), record.request.WhichOneof("request_type"))
            if label not in seen["envelope"]:
                seen["envelope"].add(label)
                keep("envelope", payload)
            if which == "inform_init":
                keep("settings", kind.inform_init.settings.SerializeToString())
            if which == "record_publish":
                items = list(record.history.item) + list(record.request.partial_history.item)
                items += list(record.summary.update) + list(record.config.update)
                for item in items:
                    text = item.value_json.encode()
                    if text and text not in seen["json"] and len(seen["json"]) < 64:
                        seen["json"].add(text)
                        keep("json", text)
    for log in sorted(runs.rglob("*.wandb")):
        if log.stat().st_size <= 64 * 1024:
            keep("txlog", log.read_bytes())


if __name__ == "__main__":
    binary, out, *names = sys.argv[1:]
    names = names or ["basic", "step_commit", "console", "crash", "exception", "two_runs", "media",
                      "resume", "fork", "values", "no_finish"]
    asyncio.run(main(binary, pathlib.Path(out), names))

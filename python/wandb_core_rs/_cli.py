"""`python -m wandb_core_rs enable | disable | status`: switch this environment's
wandb between our service and W&B's, and say which one it launches."""

from __future__ import annotations

import argparse
import os
import subprocess
import sys

import wandb_core_rs as rs

# Asked in a fresh interpreter, so the answer is what a training script gets.
_PROBE = "import wandb, wandb.util as u; print(wandb.__version__); print(u.get_core_path())"


def _launched() -> tuple[str, str] | None:
    """(wandb version, binary its SDK launches) in a fresh interpreter."""
    out = subprocess.run(
        [sys.executable, "-c", _PROBE], capture_output=True, text=True, timeout=120
    )
    if out.returncode != 0:
        return None
    lines = out.stdout.strip().splitlines()
    return (lines[0], lines[-1]) if len(lines) >= 2 else None


def _describe(binary: str) -> str:
    """Our binary answers --version with `wandb-core X (wandb-core-rs)`;
    W&B's Go binary has no such flag."""
    try:
        out = subprocess.run(
            [binary, "--version"], capture_output=True, text=True, timeout=30
        )
    except OSError as e:
        return f"cannot run it: {e}"
    if out.returncode == 0 and "wandb-core-rs" in out.stdout:
        return out.stdout.strip()
    return "W&B's wandb-core (Go)"


def enable(_args) -> int:
    ours = rs.binary()
    if ours is None:
        print("wandb-core-rs: its wandb-core binary is missing; reinstall wandb-core-rs", file=sys.stderr)
        return 1
    path = rs.state_file()
    tmp = path.with_name(path.name + f".{os.getpid()}")
    tmp.write_text("wandb in this environment launches wandb-core-rs (`python -m wandb_core_rs disable` undoes it)\n")
    os.replace(tmp, path)
    return status(None)


def disable(_args) -> int:
    try:
        rs.state_file().unlink()
    except FileNotFoundError:
        pass
    return status(None)


def status(_args) -> int:
    override = os.environ.get(rs.ENV)
    print(
        f"wandb-core-rs is {'enabled' if rs.state_file().exists() else 'disabled'} in {sys.prefix}"
        + (f" ({rs.ENV}={override} overrides it in this shell)" if override else "")
    )
    found = _launched()
    if found is None:
        print("wandb is not installed here (or fails to import)")
        return 0
    version, binary = found
    print(f"wandb {version} launches {binary}: {_describe(binary)}")
    if not rs.supported(version):
        print(f"wandb {version} is outside the range wandb-core-rs supports ({rs.supported_range()})")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m wandb_core_rs",
        description="Switch this environment's wandb between wandb-core-rs and W&B's own service.",
    )
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("enable", help="wandb launches wandb-core-rs from now on").set_defaults(func=enable)
    sub.add_parser("disable", help="wandb launches its own wandb-core again").set_defaults(func=disable)
    sub.add_parser("status", help="which service wandb launches now").set_defaults(func=status)
    args = parser.parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())

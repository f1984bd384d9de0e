"""wandb-core-rs for Python: the wandb SDK served by our Rust `wandb-core`.

The wandb SDK starts its service by running the binary that
`wandb.util.get_core_path()` names (its own `wandb/bin/wandb-core`, in every
release from 0.19 to 0.31). This package ships our binary as a script of the
environment and, through `wandb_core_rs.pth`, an import hook that replaces
that one function when `wandb.util` loads, if this environment is switched
on. Nothing of wandb's is modified on disk, so:

- `pip install -U wandb` (or a reinstall, or a downgrade) keeps using ours:
  the hook is ours, not a file in wandb's package;
- `pip uninstall wandb-core-rs` takes the hook away and wandb is exactly as
  it was;
- `WANDB_CORE_RS=0` (or `1`) overrides the switch for one process.

Switching is `python -m wandb_core_rs enable` / `... disable` (see `_cli`);
the state is one marker file beside this package in site-packages, so it
survives upgrades of both packages. Everything here is imported at
interpreter start-up by the .pth, so it uses the standard library only and
does no work until wandb is imported.
"""

from __future__ import annotations

import os

#: Environment variable that overrides the switch: 0/false/off or 1/true/on.
ENV = "WANDB_CORE_RS"

#: Set by the hook to W&B's own binary, for our binary to hand over what it
#: does not do itself (`wandb-core leet`).
WANDB_CORE_ENV = "WANDB_CORE_RS_WANDB_CORE"

#: The wandb releases this service is tested with (oldest, newest minor);
#: others launch W&B's own service, with a warning.
SUPPORTED = ((0, 22), (0, 31))

_ON = {"1", "true", "on", "yes"}
_OFF = {"0", "false", "off", "no"}


def state_file() -> pathlib.Path:
    """The marker whose presence switches this environment to our service."""
    import pathlib

    return pathlib.Path(__file__).resolve().parent.parent / "wandb-core-rs.enabled"


def switched_on() -> bool:
    """Whether wandb in this process should launch our service."""
    override = os.environ.get(ENV, "").strip().lower()
    if override in _ON:
        return True
    if override in _OFF:
        return False
    return state_file().exists()


def binary() -> pathlib.Path | None:
    """Our `wandb-core`, as this wheel installed it (a script of the
    environment: `<prefix>/bin/wandb-core`), or None if it is missing."""
    import pathlib

    try:
        from importlib import metadata

        dist = metadata.distribution("wandb-core-rs")
        for f in dist.files or ():
            if f.name == "wandb-core" and f.parent.name == "bin":
                path = pathlib.Path(dist.locate_file(f)).resolve()
                if os.access(path, os.X_OK):
                    return path
    except Exception:  # noqa: BLE001 - an odd installation: try sysconfig
        pass
    import sysconfig

    for scheme in (None, f"{os.name}_user"):
        try:
            scripts = sysconfig.get_path("scripts", scheme) if scheme else sysconfig.get_path("scripts")
        except KeyError:
            continue
        path = pathlib.Path(scripts, "wandb-core")
        if os.access(path, os.X_OK):
            return path
    return None


def supported(version: str) -> bool:
    """Whether wandb `version` is in the tested range."""
    try:
        major, minor = (int(p) for p in version.split(".")[:2])
    except ValueError:
        return False
    return SUPPORTED[0] <= (major, minor) <= SUPPORTED[1]


def supported_range() -> str:
    (a, b), (c, d) = SUPPORTED
    return f"wandb {a}.{b}.0 to {c}.{d}.x"

"""The import hook: when `wandb.util` loads, its `get_core_path` is
replaced by one that names our binary (if this environment is switched on).

A meta path finder that answers for `wandb.util` only, lets the normal
finders locate it, and wraps their loader so the patch lands right after
the module runs, before anything can `from wandb.util import
get_core_path`. Installed once, at start-up, by `wandb_core_rs.pth`.
"""

from __future__ import annotations

import os
import sys

_TARGET = "wandb.util"


class _Loader:
    """Runs the real loader, then patches the module."""

    def __init__(self, loader):
        self._loader = loader

    def create_module(self, spec):
        return self._loader.create_module(spec)

    def exec_module(self, module):
        self._loader.exec_module(module)
        _patch(module)

    def __getattr__(self, name):
        return getattr(self._loader, name)


class _Finder:
    def find_spec(self, fullname, path=None, target=None):
        if fullname != _TARGET:
            return None
        for finder in sys.meta_path:
            if finder is self or not hasattr(finder, "find_spec"):
                continue
            spec = finder.find_spec(fullname, path, target)
            if spec is not None:
                break
        else:
            return None
        if spec.loader is not None and hasattr(spec.loader, "exec_module"):
            spec.loader = _Loader(spec.loader)
        return spec


def _patch(util) -> None:
    import wandb_core_rs as rs

    original = getattr(util, "get_core_path", None)
    if original is None or not rs.switched_on():
        return

    def get_core_path() -> str:
        from importlib import metadata

        version = metadata.version("wandb")
        if not rs.supported(version):
            sys.stderr.write(
                f"wandb-core-rs: wandb {version} is outside the supported range "
                f"({rs.supported_range()}); using W&B's own wandb-core.\n"
            )
            return original()
        path = rs.binary()
        # W&B's binary, for what ours hands over to it (`wandb leet`, W&B's
        # terminal UI, which ours does not have yet): the SDK's children
        # inherit the environment.
        try:
            os.environ[rs.WANDB_CORE_ENV] = original()
        except Exception:  # noqa: BLE001 - W&B's binary is missing: nothing to hand over to
            pass
        if path is None:
            sys.stderr.write(
                "wandb-core-rs: its wandb-core binary is missing (reinstall "
                "wandb-core-rs); using W&B's own wandb-core.\n"
            )
            return original()
        return str(path)

    get_core_path.__wrapped__ = original
    get_core_path.__doc__ = "wandb-core-rs: the path of the service binary to launch."
    util.get_core_path = get_core_path


def install() -> None:
    if not any(isinstance(f, _Finder) for f in sys.meta_path):
        sys.meta_path.insert(0, _Finder())


install()

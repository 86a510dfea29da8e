"""Env vars of a local process that come from files (a connection's secret or config map under
``flowd run``): the values are read by the process that needs them, right before it starts its
command, so they pass through no argv, no plan file and no log."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

__all__ = ["MAX_VALUE_BYTES", "EnvSourceError", "read_env_sources"]

# a secret value is small; a bigger file is a mistake (a folder of data named as a secret)
MAX_VALUE_BYTES = 1 << 20


class EnvSourceError(Exception):
    pass


def _read(path: Path) -> str:
    try:
        size = path.stat().st_size
        if size > MAX_VALUE_BYTES:
            raise EnvSourceError(f"{path} is {size} bytes; an env value from a secret holds at most {MAX_VALUE_BYTES}")
        return path.read_text().rstrip("\n")
    except OSError as exc:
        raise EnvSourceError(f"cannot read {path}: {exc.strerror or exc}") from None


def read_env_sources(sources: list[dict[str, Any]]) -> dict[str, str]:
    """``[{"name", "value"} | {"name", "file"} | {"dir"}]`` -> env (later entries win). A ``dir``
    gives one variable per file in it (the file's name)."""
    env: dict[str, str] = {}
    for src in sources:
        if "dir" in src:
            folder = Path(src["dir"])
            if not folder.is_dir():
                raise EnvSourceError(f"{folder} does not exist (the {src.get('what', 'secret')} "
                                     f"{src.get('resource', folder.name)!r} of connection {src.get('connection')!r})")
            for entry in sorted(folder.iterdir()):
                if entry.is_file() and not entry.name.startswith("."):
                    env[entry.name] = _read(entry)
        elif "file" in src:
            path = Path(src["file"])
            if not path.is_file():
                raise EnvSourceError(f"{path} does not exist (key {path.name!r} of the {src.get('what', 'secret')} "
                                     f"{path.parent.name!r} of connection {src.get('connection')!r})")
            env[src["name"]] = _read(path)
        else:
            env[src["name"]] = str(src["value"])
    return env


def secrets_dir_default() -> Path:
    base = os.environ.get("XDG_CONFIG_HOME") or os.path.join(os.path.expanduser("~"), ".config")
    return Path(base) / "flowd" / "secrets"

"""Op outputs as executors collect them: a JSON object written by the op (the ``$FLOWD_OUTPUTS``
file locally, the container's termination message on Kubernetes)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from flowd.spec.limits import Limits, over

DEFAULT_MAX_BYTES = Limits().max_outputs_bytes


def read_outputs_file(path: Path, source: str, *, max_bytes: int = DEFAULT_MAX_BYTES) -> tuple[dict[str, Any] | None, str | None]:
    """:func:`parse_outputs` of the file at ``path``, read only up to ``max_bytes`` (setting
    ``max_outputs_bytes``): a job that writes gigabytes there fails instead of filling memory.
    A missing file is no outputs."""
    try:
        with path.open("rb") as fh:
            data = fh.read(max_bytes + 1)
    except OSError:
        return None, None
    if len(data) > max_bytes:
        return None, f"{source}: " + str(over("the outputs file is", len(data), "bytes", setting="max_outputs_bytes",
                                              limit=max_bytes, at_least=True))
    return parse_outputs(data.decode("utf-8", "replace"), source)


def parse_outputs(text: str | None, source: str) -> tuple[dict[str, Any] | None, str | None]:
    """``(outputs, None)``, or ``(None, why not)`` when ``text`` is not a JSON object; nothing
    written at all is no outputs and no error. ``source`` names where the text came from."""
    if not text or not text.strip():
        return None, None
    try:
        value = json.loads(text)
    except ValueError as exc:
        return None, f"{source} is not valid JSON: {exc}"
    if not isinstance(value, dict):
        return None, f"{source} must be a JSON object, found {type(value).__name__}"
    return value, None

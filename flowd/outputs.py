"""Op outputs as executors collect them: a JSON object written by the op (the ``$FLOWD_OUTPUTS``
file locally, the container's termination message on Kubernetes)."""

from __future__ import annotations

import json
from typing import Any


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

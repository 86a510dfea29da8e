"""Cron presets shared by schedule validation (spec) and tick computation (engine)."""

from __future__ import annotations

PRESETS = {
    "@hourly": "0 * * * *",
    "@daily": "0 0 * * *",
    "@weekly": "0 0 * * 0",
    "@monthly": "0 0 1 * *",
    "@quarterly": "0 0 1 */3 *",
    "@yearly": "0 0 1 1 *",
    "@annually": "0 0 1 1 *",
}


def normalize(expr: str) -> str:
    """A 5-field expression for ``expr`` (presets expanded)."""
    return PRESETS.get(expr.strip(), expr)

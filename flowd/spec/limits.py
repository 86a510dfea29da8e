"""Limits on everything a submission can make flowd build, and the one place their defaults live.

A Polyaxonfile comes from a user (``flowd check``/``flowd run``) or from any producer on the
bus (``flowd serve``). A few hundred bytes of YAML can describe billions of objects (an alias
"bomb", a ``grid`` of three 1,000-value ranges), so every size is measured *before* the work it
would cause is done, and compared with a limit from :class:`Limits`. Going over a limit is an
ordinary error that names where (file, op, field), what was measured, the limit, and the setting
that raises it (:func:`over`).

:class:`Limits` is a plain value: the compiler and the engine receive it as an argument and never
read the environment. The edges build it from their settings (flags, ``FLOWD_*`` env,
``flowd.toml``) with :func:`limits_from`, the only function here that looks at a name -> text
mapping (the caller passes ``os.environ``). docs/limits.md explains each default.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

import msgspec

__all__ = ["LIMIT_NAMES", "LimitError", "Limits", "json_size", "limits_from", "over", "parse_size"]

KiB = 1024
MiB = 1024 * KiB


class Limits(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """The limits of one compilation and of one engine. Every field is a setting of that name."""

    # bytes of one Polyaxonfile text (the submitted file and every file it references)
    max_spec_bytes: int = 10 * MiB
    # alias uses (``*name``) in one YAML document
    max_yaml_aliases: int = 10_000
    # size of a YAML document with every alias written out: scalar text plus 2 per node
    max_yaml_expanded_bytes: int = 16 * MiB
    # nesting of YAML mappings/sequences
    max_yaml_depth: int = 64
    # DAGs inside DAGs (a pipeline is depth 1)
    max_dag_depth: int = 16
    # ops of one pipeline run after every matrix and nested DAG is expanded
    max_ops: int = 250_000
    # text (or value) one template renders to
    max_template_bytes: int = 1 * MiB
    # JSON outputs one op attempt reports (the $FLOWD_OUTPUTS file, a report on the bus)
    max_outputs_bytes: int = 1 * MiB
    # the params of one submission (``--param`` values, ``Submission.params``), as JSON
    max_params_bytes: int = 1 * MiB
    # runs one join selects: the default and the cap of its `limit` (POLYFLOW §8.4)
    max_join_runs: int = 5000
    # finished runs a `flowd serve` partition keeps in memory (for joins and status) before it
    # forgets the oldest, whatever `retention` says
    max_retained_runs: int = 10_000


LIMIT_NAMES: tuple[str, ...] = Limits.__struct_fields__

HELP = {
    "max_spec_bytes": "bytes of one Polyaxonfile (and of each file it references)",
    "max_yaml_aliases": "YAML alias uses (*name) in one document",
    "max_yaml_expanded_bytes": "size of a YAML document with its aliases written out",
    "max_yaml_depth": "nesting depth of YAML mappings and sequences",
    "max_dag_depth": "DAGs nested inside DAGs",
    "max_ops": "ops of one run after matrices and nested DAGs are expanded",
    "max_template_bytes": "bytes one template renders to",
    "max_outputs_bytes": "bytes of the JSON outputs one attempt reports",
    "max_params_bytes": "bytes of a submission's params (JSON)",
    "max_join_runs": "runs one join selects (default and cap of its limit)",
    "max_retained_runs": "finished runs a flowd serve partition keeps for joins",
}


class LimitError(ValueError):
    """A measured size is over its limit. ``str()`` is the full sentence :func:`over` builds."""

    def __init__(self, message: str, *, setting: str, measured: int, limit: int) -> None:
        super().__init__(message)
        self.setting = setting
        self.measured = measured
        self.limit = limit


def over(what: str, measured: int, unit: str, *, setting: str, limit: int, at_least: bool = False) -> LimitError:
    """``"{what} {measured} {unit}; the limit is {limit} (setting {setting})"``, e.g. ``over("this
    matrix expands to", 10**9, "runs", setting="max_ops", limit=250_000)``. ``at_least``: the
    measure stopped as soon as it passed the limit, so ``measured`` is a lower bound."""
    more = "at least " if at_least else ""
    unit = f" {unit}" if unit else ""
    return LimitError(f"{what} {more}{measured:,}{unit}; the limit is {limit:,} (setting {setting})",
                      setting=setting, measured=measured, limit=limit)


def json_size(value: Any) -> int:
    """Bytes of ``value`` as JSON (what it costs on the bus and in snapshots)."""
    try:
        return len(msgspec.json.encode(value))
    except (TypeError, msgspec.EncodeError, OverflowError):
        return len(repr(value).encode("utf-8", "replace"))


_SUFFIXES = (("KiB", KiB), ("MiB", MiB), ("GiB", 1024 * MiB), ("k", 1000), ("M", 1000**2), ("G", 1000**3))


def parse_size(text: str) -> int:
    """``"100000"``, ``"100_000"``, ``"10MiB"``, ``"64k"`` -> int. Raises ValueError."""
    raw = text.strip()
    for suffix, factor in _SUFFIXES:
        if raw.endswith(suffix):
            return int(raw[: -len(suffix)].strip()) * factor
    return int(raw)


def limits_from(*, env: Mapping[str, str] | None = None, table: Mapping[str, Any] | None = None,
                items: Iterable[str] = (), base: Limits | None = None) -> Limits:
    """Layer the settings: ``base`` (defaults) < ``table`` (a TOML ``[limits]`` table) < ``env``
    (``FLOWD_MAX_OPS=...``) < ``items`` (``--limit max_ops=1000``). Raises ValueError naming the
    bad setting."""
    values: dict[str, Any] = msgspec.structs.asdict(base or Limits())
    for name, value in (table or {}).items():
        values[_known(name, "in [limits]")] = _value(name, value)
    for name in LIMIT_NAMES:
        raw = (env or {}).get(f"FLOWD_{name.upper()}")
        if raw not in (None, ""):
            values[name] = _value(f"FLOWD_{name.upper()}", raw)
    for item in items:
        name, sep, raw = item.partition("=")
        if not sep:
            raise ValueError(f"--limit expects NAME=VALUE, got {item!r} (names: {', '.join(LIMIT_NAMES)})")
        values[_known(name.strip(), "for --limit")] = _value(name.strip(), raw)
    return Limits(**values)


def _known(name: str, where: str) -> str:
    if name not in LIMIT_NAMES:
        raise ValueError(f"unknown limit {name!r} {where} (names: {', '.join(LIMIT_NAMES)})")
    return name


def _value(name: str, raw: Any) -> int:
    if isinstance(raw, bool):
        raw = repr(raw)  # not a number: said below
    try:
        value = raw if isinstance(raw, int) else parse_size(str(raw))
    except ValueError:
        raise ValueError(f"{name}: expected a number (like 100000 or 10MiB), got {raw!r}") from None
    if value <= 0:
        raise ValueError(f"{name}: must be greater than 0, got {value}")
    return value

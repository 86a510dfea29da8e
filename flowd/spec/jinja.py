"""The one Jinja2 environment flowd renders templates with, shared by the engine (which renders)
and ``flowd check`` (which parses, so a syntax error or an unknown filter is reported before
anything runs).

* Sandboxed and immutable (``ImmutableSandboxedEnvironment``): a spec cannot reach
  ``__class__``/``__globals__``, mutate its context or load files.
* ``StrictUndefined``: an unknown name is an error, never an empty string. A typo such as
  ``{{ learning_rate }}`` for an input called ``lr`` fails the op instead of running ``train``
  with a blank argument. ``is defined`` and ``| default(...)`` still work.
* Items before attributes on mappings: outputs and params are data, so an output called
  ``values``, ``items`` or ``keys`` is that output, not the ``dict`` method of the same name.
"""

from __future__ import annotations

import json
from typing import Any, TypeVar

import jinja2
import jinja2.meta
from jinja2.sandbox import ImmutableSandboxedEnvironment

__all__ = ["ENV", "ItemsFirstSandbox", "configure", "syntax_problem", "undeclared_names"]


def _map_format(values: Any, fmt: str) -> list[str]:
    return [fmt.format(v) for v in values]


class ItemsFirstSandbox(ImmutableSandboxedEnvironment):
    def getattr(self, obj: Any, attribute: str) -> Any:
        if isinstance(obj, dict):
            try:
                return obj[attribute]
            except (KeyError, TypeError):
                pass
        return super().getattr(obj, attribute)


_E = TypeVar("_E", bound=ImmutableSandboxedEnvironment)


def configure(env: _E) -> _E:
    """flowd's settings and filters on ``env`` (the engine renders with a subclass that also bounds sizes)."""
    env.undefined = jinja2.StrictUndefined
    env.autoescape = False
    env.keep_trailing_newline = True
    env.filters["map_format"] = _map_format
    env.filters["tojson"] = lambda v: json.dumps(v, sort_keys=True)
    return env


ENV = configure(ItemsFirstSandbox())


def syntax_problem(source: str) -> str | None:
    """Why ``source`` does not compile (bad syntax, unknown filter or test), or None."""
    try:
        ENV.from_string(source)
    except jinja2.TemplateSyntaxError as exc:
        return exc.message or str(exc)
    return None


def undeclared_names(source: str) -> set[str]:
    """Top-level names ``source`` reads from its context (loop variables and ``set`` excluded)."""
    try:
        return set(jinja2.meta.find_undeclared_variables(ENV.parse(source)))
    except jinja2.TemplateSyntaxError:
        return set()

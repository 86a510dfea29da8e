"""Sandboxed rendering of ``{{ ... }}`` templates in params, conditions and the run section.

Specs come from users, so templates render in Jinja2's ``ImmutableSandboxedEnvironment``: no
attribute access to internals (``__class__``, ``__globals__``...), no mutation of the context, no
file system loader, no ``import``. Rendering is pure: the same template and context always give the
same text, which the engine's replay guarantee depends on.

Compiled templates are cached by source text (LRU): a 10,000-op fan-out typically shares a
handful of distinct templates.
"""

from __future__ import annotations

import ast
import functools
from typing import Any

import jinja2
from jinja2.exceptions import SecurityError

from flowd.engine.template_bounds import BoundedSandbox, check_value
from flowd.engine.template_bounds import render as _render
from flowd.spec.jinja import ItemsFirstSandbox, configure

TRUE_WORDS = frozenset({"y", "yes", "t", "true", "on", "1"})
FALSE_WORDS = frozenset({"n", "no", "f", "false", "off", "0"})


class TemplateError(ValueError):
    """A template could not be rendered; the message says which and why."""


class _Env(BoundedSandbox, ItemsFirstSandbox):
    """flowd check's environment (strict undefined, items before attributes) that also bounds
    the sizes a template may build (template_bounds.py)."""


_env = configure(_Env())


def is_template(value: Any) -> bool:
    return isinstance(value, str) and ("{{" in value or "{%" in value)


@functools.lru_cache(maxsize=4096)
def _compile(source: str) -> jinja2.Template:
    try:
        return _env.from_string(source)
    except jinja2.TemplateSyntaxError as exc:
        raise TemplateError(f"invalid template {source!r}: {exc.message}") from None


def render_text(source: str, context: dict[str, Any]) -> str:
    """Render ``source`` to text."""
    try:
        return _render(_compile(source), context)
    except SecurityError as exc:
        raise TemplateError(f"template {source!r} is not allowed: {exc}") from None
    except TemplateError:
        raise
    except Exception as exc:  # noqa: BLE001 - undefined attribute access, type errors in expressions...
        raise TemplateError(f"could not render {source!r}: {exc}") from None


def _single_expression(source: str) -> str | None:
    stripped = source.strip()
    if stripped.startswith("{{") and stripped.endswith("}}") and stripped.count("{{") == 1:
        return stripped[2:-2].strip()
    return None


def render_value(source: str, context: dict[str, Any]) -> Any:
    """Render a template that stands for a value (a param value).

    A string that is exactly one ``{{ expr }}`` evaluates to the expression's Python value, so
    ``{{ ops.a.outputs.rows }}`` stays an int and a list stays a list. Text mixed with
    templates renders to a string, then goes through ``ast.literal_eval`` when that succeeds
    (``"3"`` -> 3), as Polyaxon does.
    """
    expr = _single_expression(source)
    if expr is not None:
        try:
            compiled = _expression(expr)
        except TemplateError:
            compiled = None
        if compiled is not None:
            try:
                value = compiled(**context)
            except SecurityError as exc:
                raise TemplateError(f"template {source!r} is not allowed: {exc}") from None
            except Exception as exc:  # noqa: BLE001 - any error in a user's expression is a TemplateError
                raise TemplateError(f"could not render {source!r}: {exc}") from None
            if isinstance(value, jinja2.Undefined):
                raise TemplateError(f"could not render {source!r}: {_undefined_name(value)} is undefined")
            try:
                return check_value(value)
            except ValueError as exc:
                raise TemplateError(f"could not render {source!r}: {exc}") from None
    text = render_text(source, context)
    try:
        return ast.literal_eval(text)
    except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
        return text


@functools.lru_cache(maxsize=4096)
def _expression(expr: str) -> Any:
    try:
        return _env.compile_expression(expr, undefined_to_none=False)
    except jinja2.TemplateSyntaxError as exc:
        raise TemplateError(f"invalid expression {expr!r}: {exc.message}") from None


def _undefined_name(value: jinja2.Undefined) -> str:
    name = getattr(value, "_undefined_name", None)
    return repr(name) if name else "a name"


def render_deep(value: Any, context: dict[str, Any], *, keep_text: bool = False) -> Any:
    """Render every template string inside ``value`` (dicts and lists are walked).

    With ``keep_text`` strings stay strings (container ``command``/``args`` items, POLYFLOW §3.5).
    """
    if isinstance(value, str):
        if not is_template(value):
            return value
        if keep_text:
            return render_text(value, context)
        return render_value(value, context)
    if isinstance(value, dict):
        return {k: render_deep(v, context, keep_text=keep_text or k in ("command", "args")) for k, v in value.items()}
    if isinstance(value, list):
        return [render_deep(v, context, keep_text=keep_text) for v in value]
    return value


def truth(text: Any, *, what: str = "conditions") -> bool:
    """The strict truthiness parser of POLYFLOW §5.6: only the truth words count."""
    if isinstance(text, bool):
        return text
    word = str(text).strip().lower()
    if word in TRUE_WORDS:
        return True
    if word in FALSE_WORDS:
        return False
    raise TemplateError(f"{what} rendered to {str(text)!r}, which is neither true nor false")


def evaluate_condition(source: str, context: dict[str, Any]) -> bool:
    """Render a ``conditions`` string and parse its truth value."""
    if not is_template(source):
        return truth(source)
    return truth(render_text(source, context))

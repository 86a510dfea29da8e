"""A size bound on what a template may produce (setting ``max_template_bytes``, docs/limits.md).

Jinja's sandbox stops attribute tricks, not size: ``{{ 'x' * 10**10 }}`` or ``{{ 9 ** 10**9 }}``
would build the value before anyone could measure it. So the sandbox here intercepts the
operators that multiply size (``*``, ``**``, ``+``) and refuses a result over the bound *before*
computing it, and :func:`render` counts the text as Jinja yields it, stopping at the bound.

The bound is a plain number the engine sets around each ``handle()`` (:func:`bind`/:func:`unbind`,
a context variable, so it needs no plumbing through every resolver call and is never read from
the environment); outside the engine the default limit applies.
"""

from __future__ import annotations

import contextvars
from typing import Any

import jinja2
from jinja2.sandbox import ImmutableSandboxedEnvironment

from flowd.spec.limits import LimitError, Limits, json_size, over

__all__ = ["BoundedSandbox", "TemplateTooBig", "bind", "bound", "check_value", "render", "unbind"]

_DEFAULT = Limits().max_template_bytes
_bound: contextvars.ContextVar[int] = contextvars.ContextVar("flowd_max_template_bytes", default=_DEFAULT)


class TemplateTooBig(ValueError):
    """A template's result (or a value computed inside it) is over ``max_template_bytes``."""


def bind(limit: int) -> contextvars.Token[int]:
    return _bound.set(limit)


def bound() -> int:
    """The bound in force (binding the same one again changes nothing: callers skip it)."""
    return _bound.get()


def unbind(token: contextvars.Token[int]) -> None:
    _bound.reset(token)


def _refuse(what: str, size: int, *, at_least: bool = False) -> TemplateTooBig:
    error: LimitError = over(what, size, "bytes", setting="max_template_bytes", limit=_bound.get(),
                             at_least=at_least)
    return TemplateTooBig(str(error))


def _length(value: Any) -> int | None:
    return len(value) if isinstance(value, (str, bytes, list, tuple)) else None


class BoundedSandbox(ImmutableSandboxedEnvironment):
    intercepted_binops = frozenset({"*", "**", "+"})

    def call_binop(self, context: Any, operator: str, left: Any, right: Any) -> Any:
        limit = _bound.get()
        if operator == "*":
            for seq, times in ((left, right), (right, left)):
                n = _length(seq)
                if n is not None and isinstance(times, int) and n * times > limit:
                    raise _refuse("a repetition in the template would be", n * times)
        elif operator == "+":
            a, b = _length(left), _length(right)
            if a is not None and b is not None and a + b > limit:
                raise _refuse("a concatenation in the template would be", a + b)
        elif operator == "**" and isinstance(left, int) and isinstance(right, int) and right > 0:
            bits = max(abs(left).bit_length() - 1, 0) * right  # a lower bound of the result's size
            if bits // 8 > limit:
                raise _refuse("a power in the template would be", bits // 8)
        return super().call_binop(context, operator, left, right)


def render(template: jinja2.Template, context: dict[str, Any]) -> str:
    """``template.render(context)``, stopped as soon as the text passes the bound."""
    limit = _bound.get()
    size = 0
    chunks: list[str] = []
    for chunk in template.generate(context):
        size += len(chunk)
        if size > limit:
            raise _refuse("the template renders to", size, at_least=True)
        chunks.append(chunk)
    return "".join(chunks)


def check_value(value: Any) -> Any:
    """A value a single ``{{ expr }}`` evaluated to, refused when over the bound (text by its
    length, a list or mapping by its JSON size)."""
    limit = _bound.get()
    if isinstance(value, (str, bytes)):
        size = len(value)
    elif isinstance(value, (list, tuple, dict)):
        size = json_size(value)
    else:
        return value
    if size > limit:
        raise _refuse("the template evaluates to a value of", size)
    return value

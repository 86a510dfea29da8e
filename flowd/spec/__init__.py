"""The spec layer: Polyaxonfile model, validation and compilation (POLYFLOW §1–§4, §6–§8).

What other layers may import:

* :func:`compile_path`, :func:`compile_text` -> :class:`CompileResult` (``op``, ``errors``,
  ``warnings``, ``valid``) with :class:`Diagnostic` items;
* :func:`coerce` / :class:`CoercionError` -- IO type coercion (§2.2), for resolved values at run time;
* the compiled tree in :mod:`flowd.spec.compiled` (``Op``, ``Component``, ``Dag``, ...);
* the document model in :mod:`flowd.spec.model` and :func:`load_text`/:func:`dump_text` for tools.
"""

from flowd.spec.compiler import CompileResult, compile_path, compile_text
from flowd.spec.diagnostics import Diagnostic
from flowd.spec.types import CoercionError, coerce, coerce_value, is_template
from flowd.spec.yamlio import YamlSyntaxError, dump_text, load_text

__all__ = [
    "CompileResult",
    "CoercionError",
    "Diagnostic",
    "YamlSyntaxError",
    "coerce",
    "coerce_value",
    "compile_path",
    "compile_text",
    "dump_text",
    "is_template",
    "load_text",
]

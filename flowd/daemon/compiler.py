"""Compiling submissions that carry Polyaxonfile text (``Submission.spec``) inside the daemon.

A producer in another language sends the YAML; the daemon compiles it like ``flowd check`` and
either gets a pipeline or diagnostics (which become a ``pipeline failed`` event). ``pathRef``s
are not resolved (there is no base folder); ``hubRef``s use the daemon's ``--hub``.
"""

from __future__ import annotations

from flowd.daemon import wire
from flowd.daemon.partition import Compiler
from flowd.spec.compiled import Op
from flowd.spec.limits import Limits

__all__ = ["make_compiler"]


def make_compiler(hub: str | None, limits: Limits | None = None) -> Compiler:
    """``limits`` (the daemon's ``[limits]``) are checked before the work they bound: the spec's
    size before it is parsed, aliases while it is, ops before a matrix is expanded."""

    def compile_submission(msg: wire.Submission) -> tuple[Op | None, list[wire.Diagnostic]]:
        from flowd.spec import compile_text

        source = msg.source or "<submission>"
        try:
            result = compile_text(msg.spec or "", source=source, base_dir=None, params=dict(msg.params), hub=hub,
                                  limits=limits)
        except Exception as exc:  # noqa: BLE001 - a compiler bug must not stop the partition
            return None, [wire.Diagnostic(path=source, location="", message=f"internal compiler error: {exc!r}")]
        diagnostics = [
            wire.Diagnostic(path=d.path, location=d.location, message=d.message, line=d.line, column=d.column,
                            severity=d.severity)
            for d in result.errors + result.warnings
        ]
        return result.op, diagnostics

    return compile_submission

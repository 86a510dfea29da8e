"""Compiling submissions that carry Polyaxonfile text (``Submission.spec``) inside the daemon.

A producer in another language sends the YAML; the daemon compiles it like ``flowd check`` and
either gets a pipeline or diagnostics (which become a ``pipeline failed`` event). ``pathRef``s
are not resolved (there is no base folder); ``hubRef``s use the daemon's ``--hub``; ``urlRef``s
only from documents fetched beforehand under the daemon's allowlist (flowd.daemon.urlrefs):
compiling never does network I/O, so it stays deterministic and quick.
"""

from __future__ import annotations

from typing import Any

from flowd.daemon import wire
from flowd.daemon.partition import Compiler
from flowd.daemon.urlrefs import FetchNeeded, SubmissionDocuments, UrlPolicy, redact
from flowd.spec.compiled import Op
from flowd.spec.limits import Limits

__all__ = ["compile_with", "make_compiler"]


def compile_with(msg: wire.Submission, fetcher: SubmissionDocuments, hub: str | None,
                 limits: Limits | None = None) -> Any:
    from flowd.spec import compile_text

    return compile_text(msg.spec or "", source=msg.source or "<submission>", base_dir=None, params=dict(msg.params),
                        hub=hub, url_fetcher=fetcher, limits=limits)


def make_compiler(hub: str | None, url_policy: UrlPolicy | None = None,
                  limits: Limits | None = None) -> Compiler:
    """The daemon's compiler. Raises :class:`FetchNeeded` for a submission whose urlRefs the
    policy allows and nobody fetched yet (the partition hands it to the fetcher). ``limits`` (the daemon's ``[limits]``) are checked
    before the work they bound: the spec's size before it is parsed, aliases while it is, ops before
    a matrix is expanded."""
    policy = url_policy or UrlPolicy()

    def compile_submission(msg: wire.Submission) -> tuple[Op | None, list[wire.Diagnostic]]:
        source = msg.source or "<submission>"
        try:
            result = compile_with(msg, SubmissionDocuments(msg, policy), hub, limits)
        except FetchNeeded:
            raise
        except Exception as exc:  # noqa: BLE001 - a compiler bug must not stop the partition
            return None, [wire.Diagnostic(path=source, location="", message=f"internal compiler error: {exc!r}")]
        diagnostics = [
            wire.Diagnostic(path=d.path, location=d.location, message=d.message, line=d.line, column=d.column,
                            severity=d.severity)
            for d in result.errors + result.warnings
        ]
        return result.op, redact(diagnostics, msg)

    return compile_submission

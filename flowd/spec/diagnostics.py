"""Diagnostics: what ``flowd check`` prints and what the compiler collects instead of raising.

A diagnostic names the file, a location path inside that file's document
(``run.operations[2].params.lr``), the message, and, once :meth:`Sources.locate` has looked
the path up, the line and column. Positions are computed lazily (only for files that have
diagnostics), so valid files never pay for them.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable
from typing import Any, Literal

import msgspec

from flowd.spec.yamlio import positions

__all__ = ["Diagnostic", "Severity", "format_path", "did_you_mean", "closest", "Sources", "Finding"]

Severity = Literal["error", "warning"]
Path = tuple[Any, ...]


class Diagnostic(msgspec.Struct, kw_only=True):
    """One finding. ``path`` is the file (or URL, or ``<string>``); ``location`` a dotted path."""

    path: str
    location: str
    message: str
    line: int | None = None
    column: int | None = None
    severity: Severity = "error"

    @property
    def file(self) -> str:
        return self.path

    def format(self) -> str:
        """``FILE:LINE:COL: error: LOCATION: message`` (line/column omitted when unknown)."""
        where = self.path
        if self.line is not None:
            where += f":{self.line}"
            if self.column is not None:
                where += f":{self.column}"
        loc = f"{self.location}: " if self.location else ""
        return f"{where}: {self.severity}: {loc}{self.message}"


def format_path(path: Iterable[Any]) -> str:
    """``("run", "operations", 2, "params", "lr")`` -> ``run.operations[2].params.lr``."""
    out: list[str] = []
    for part in path:
        if isinstance(part, int):
            out.append(f"[{part}]")
        else:
            text = str(part)
            if out:
                out.append(".")
            out.append(text)
    return "".join(out)


def did_you_mean(word: str, candidates: Iterable[str], *, cutoff: float = 0.6) -> str:
    """`` (did you mean `x`?)`` or an empty string."""
    match = closest(word, candidates, cutoff=cutoff)
    return f" (did you mean `{match}`?)" if match else ""


def closest(word: str, candidates: Iterable[str], *, cutoff: float = 0.6) -> str | None:
    """The candidate closest to ``word`` (difflib, or a unique substring match), if any."""
    cands = [c for c in candidates if isinstance(c, str)]
    match = difflib.get_close_matches(word, cands, n=1, cutoff=cutoff)
    if not match and isinstance(word, str):
        # substring relation catches `bucket` vs `input-bucket`
        lowered = word.lower()
        subs = [c for c in cands if len(lowered) >= 3 and (lowered in c.lower() or c.lower() in lowered)]
        if len(subs) == 1:
            match = subs
    return match[0] if match else None


class Sources:
    """The texts of the documents read during one compilation, for lazy positions."""

    def __init__(self) -> None:
        self._texts: dict[str, str] = {}
        self._marks: dict[str, dict[Path, tuple[int, int]]] = {}

    def add(self, name: str, text: str) -> None:
        self._texts[name] = text

    def locate(self, name: str, path: Path) -> tuple[int | None, int | None]:
        text = self._texts.get(name)
        if text is None:
            return None, None
        marks = self._marks.get(name)
        if marks is None:
            marks = self._marks[name] = positions(text)
        p = tuple(path)
        while p:
            hit = marks.get(p)
            if hit is not None:
                return hit
            p = p[:-1]
        return (1, 1) if marks else (None, None)


class Finding:
    """A diagnostic before positions are known: where (source, path) and what."""

    __slots__ = ("severity", "source", "path", "message", "suffix", "line", "column", "locate")

    def __init__(
        self,
        severity: Severity,
        source: str,
        path: Path,
        message: str,
        suffix: str = "",
        *,
        line: int | None = None,
        column: int | None = None,
        locate: bool = True,
    ) -> None:
        self.severity = severity
        self.source = source
        self.path = path
        self.message = message
        self.suffix = suffix
        self.line = line
        self.column = column
        self.locate = locate  # False: the path is not in the YAML (e.g. a --param value)

    def __repr__(self) -> str:
        return f"Finding({self.severity}, {self.source}, {format_path(self.path)}, {self.message!r})"

    def to_diagnostic(self, sources: Sources) -> Diagnostic:
        if self.line is not None or not self.locate:
            line, col = self.line, self.column
        else:
            line, col = sources.locate(self.source, self.path)
        return Diagnostic(
            path=self.source,
            location=format_path(self.path),
            message=self.message + self.suffix,
            line=line,
            column=col,
            severity=self.severity,
        )

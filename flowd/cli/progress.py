"""Progress displays for ``flowd run``: a live ``rich`` view on a terminal, plain lines otherwise.

Both take ``StatusChanged`` commands from the driver (see flowd.runtime.driver.Progress) and
driver notes. Matrix children are counted, not listed: ``sweep[0]``, ``sweep[1]``... show as one
``sweep[*]`` row with counts by status (and ``sweep[*]/inner`` for ops inside their DAGs).
"""

from __future__ import annotations

import re
import time
from collections import Counter
from typing import Any, TextIO

from flowd.engine import DONE, RunView, StatusChanged

__all__ = ["PlainProgress", "LiveProgress", "make_progress", "summary"]

_INDEX = re.compile(r"\[\d+\]")
_MAX_ROWS = 30
_STYLE = {
    "succeeded": "green",
    "failed": "red",
    "upstream_failed": "red",
    "stopped": "yellow",
    "stopping": "yellow",
    "skipped": "dim",
    "running": "cyan",
    "retrying": "magenta",
}


def _label(path: str) -> str:
    return path or "(pipeline)"


def indent_message(message: str, indent: str) -> str:
    """A message as the rest of a line: its later lines (a job's output tail) start with
    ``indent``, so they stay under the entry they belong to instead of at column 0."""
    return message.rstrip("\n").replace("\n", "\n" + indent)


class PlainProgress:
    """One line per status change: ``  1.2s  train  running (attempt 2): message``."""

    def __init__(self, stream: TextIO, *, started: float | None = None) -> None:
        self.stream = stream
        self.started = time.monotonic() if started is None else started

    def status(self, change: StatusChanged) -> None:
        if change.status == "created":
            return  # every op starts there; not news
        line = f"{time.monotonic() - self.started:7.1f}s  {_label(change.path)}  {change.status}"
        if change.attempt > 1:
            line += f" (attempt {change.attempt})"
        if change.message and change.status not in ("succeeded", "running"):
            line += ": " + indent_message(change.message, " " * 12)  # under the op, past the time
        self._write(line)

    def note(self, text: str) -> None:
        self._write(text)

    def _write(self, line: str) -> None:
        try:
            print(line, file=self.stream, flush=True)
        except BrokenPipeError:
            pass

    def __enter__(self) -> PlainProgress:
        return self

    def __exit__(self, *exc: Any) -> None:
        pass


class LiveProgress:
    """A live table (ops by status, matrix counts, elapsed time), redrawn 4 times a second."""

    def __init__(self, stream: TextIO, *, pipeline: str) -> None:
        from rich.console import Console
        from rich.live import Live

        self.console = Console(file=stream)
        self.pipeline = pipeline
        self.pipeline_status = "created"
        self.started = time.monotonic()
        self.finished: float | None = None
        # row label -> {op path -> (status, attempt)}
        self.rows: dict[str, dict[str, tuple[str, int]]] = {}
        self._live = Live(console=self.console, get_renderable=self._render, refresh_per_second=4, transient=False)

    def __enter__(self) -> LiveProgress:
        self._live.__enter__()
        return self

    def __exit__(self, *exc: Any) -> None:
        self._live.__exit__(*exc)

    def status(self, change: StatusChanged) -> None:
        if change.path == "":
            self.pipeline_status = change.status
            if change.status in DONE:
                self.finished = time.monotonic()
            return
        self.rows.setdefault(_INDEX.sub("[*]", change.path), {})[change.path] = (change.status, change.attempt)
        if change.status in ("failed", "retrying") and change.message:
            from rich.markup import escape  # a job's output may hold [brackets]

            self.console.print(f"[red]{escape(change.path)}[/] {change.status}: {escape(indent_message(change.message, '    '))}",
                               markup=True, highlight=False)

    def note(self, text: str) -> None:
        self.console.print(text, markup=False, highlight=False)

    def _render(self) -> Any:
        from rich.console import Group
        from rich.table import Table
        from rich.text import Text

        elapsed = (self.finished or time.monotonic()) - self.started
        totals = Counter(status for ops in self.rows.values() for status, _ in ops.values())
        header = Text.assemble(
            (self.pipeline, "bold"), "  ", (self.pipeline_status, _STYLE.get(self.pipeline_status, "")),
            f"  {elapsed:.1f}s  ", ", ".join(f"{n} {s}" for s, n in totals.most_common()),
        )
        table = Table(box=None, show_header=False, pad_edge=False)
        # unfinished rows first, then the most recent ones, capped
        rows = sorted(self.rows.items(), key=lambda item: all(s in DONE for s, _ in item[1].values()))
        for label, ops in rows[:_MAX_ROWS]:
            if len(ops) == 1 and label in ops:
                status, attempt = ops[label]
                detail = f"attempt {attempt}" if attempt > 1 else ""
                table.add_row(label, Text(status, style=_STYLE.get(status, "")), detail)
            else:
                counts = Counter(status for status, _ in ops.values())
                text = Text()
                for i, (status, n) in enumerate(counts.most_common()):
                    text.append(("  " if i else "") + f"{n} {status}", style=_STYLE.get(status, ""))
                table.add_row(label, text, f"{len(ops)} runs")
        if len(rows) > _MAX_ROWS:
            table.add_row(f"... {len(rows) - _MAX_ROWS} more", "", "")
        return Group(header, table)


def make_progress(stream: TextIO, *, pipeline: str, live: bool | None = None) -> PlainProgress | LiveProgress:
    """A live view when ``stream`` is a terminal (or ``live`` says so), else plain lines."""
    if live is None:
        live = stream.isatty()
    return LiveProgress(stream, pipeline=pipeline) if live else PlainProgress(stream)


def summary(view: RunView, *, elapsed: float | None = None) -> str:
    """The closing lines of a text-mode run: status, counts, and every op that did not succeed."""
    counts = Counter(op.status for op in view.ops.values())
    head = f"pipeline {view.pipeline}: {view.status}"
    if elapsed is not None:
        head += f" in {elapsed:.1f}s"
    if counts:
        head += " (" + ", ".join(f"{n} {s}" for s, n in counts.most_common()) + ")"
    lines = [head]
    for path, op in view.ops.items():
        if op.status in ("failed", "upstream_failed", "stopped") and op.message:
            lines.append(f"  {path}: {op.status}: {indent_message(op.message, '      ')}")
    if view.message and view.status != "succeeded":
        lines.append(f"  {indent_message(view.message, '  ')}")
    return "\n".join(lines)

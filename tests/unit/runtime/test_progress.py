"""Progress displays: plain lines, the live table's matrix folding, and the closing summary."""

from __future__ import annotations

import io

from flowd.cli.progress import LiveProgress, PlainProgress, make_progress, summary
from flowd.engine.messages import StatusChanged
from flowd.engine.view import OpView, RunView


def change(path: str, status: str, attempt: int = 1, message: str | None = None) -> StatusChanged:
    return StatusChanged(run_id="r", path=path, status=status, time=0.0, attempt=attempt, message=message)


def test_plain_lines() -> None:
    out = io.StringIO()
    progress = PlainProgress(out)
    progress.status(change("a", "created"))
    progress.status(change("", "running"))
    progress.status(change("train", "retrying", attempt=2, message="exit code 1"))
    progress.status(change("outer/inner", "succeeded", message="ignored for successes"))
    lines = [line.split(None, 1)[1] for line in out.getvalue().splitlines()]
    assert lines == ["(pipeline)  running", "train  retrying (attempt 2): exit code 1", "outer/inner  succeeded"]


def test_live_view_folds_matrix_children_and_counts() -> None:
    out = io.StringIO()
    progress = LiveProgress(out, pipeline="p")
    progress.status(change("", "running"))
    for i, status in enumerate(["succeeded", "succeeded", "running", "created"]):
        progress.status(change(f"sweep[{i}]", status))
        progress.status(change(f"sweep[{i}]/inner", status))
    progress.status(change("prepare", "succeeded"))
    from rich.console import Console

    console = Console(file=io.StringIO(), width=100)
    console.print(progress._render())
    text = console.file.getvalue()  # type: ignore[attr-defined]
    assert "sweep[*] " in text and "sweep[*]/inner" in text and "sweep[0]" not in text
    assert "2 succeeded" in text and "1 running" in text and "4 runs" in text
    assert text.splitlines()[0].startswith("p  running")
    # unfinished rows come first
    rows = [line.split()[0] for line in text.splitlines()[1:] if line.strip()]
    assert rows[-1] == "prepare"


def test_make_progress_is_live_only_on_a_terminal() -> None:
    assert isinstance(make_progress(io.StringIO(), pipeline="p"), PlainProgress)

    class Tty(io.StringIO):
        def isatty(self) -> bool:
            return True

    assert isinstance(make_progress(Tty(), pipeline="p"), LiveProgress)


def test_summary_lists_what_did_not_succeed() -> None:
    def op(status: str, message: str | None = None) -> OpView:
        return OpView(status=status, attempts=1, outputs=None, started_at=None, finished_at=None, message=message)

    view = RunView(run_id="r", pipeline="p", status="failed", started_at=None, finished_at=None, message="1 op(s) failed",
                   ops={"a": op("succeeded"), "b": op("failed", "exit code 2"), "c": op("upstream_failed", "trigger")})
    assert summary(view, elapsed=1.25).splitlines() == [
        "pipeline p: failed in 1.2s (1 succeeded, 1 failed, 1 upstream_failed)",
        "  b: failed: exit code 2",
        "  c: upstream_failed: trigger",
        "  1 op(s) failed",
    ]


TAIL = "exit code 3: step one\nstep two\nboom (logs: /s/runs/r/attempts/one@1)"


def test_a_multi_line_output_tail_stays_indented_under_its_op() -> None:
    def op(status: str, message: str | None = None) -> OpView:
        return OpView(status=status, attempts=1, outputs=None, started_at=None, finished_at=None, message=message)

    view = RunView(run_id="r", pipeline="p", status="failed", started_at=None, finished_at=None,
                   message="1 op(s) failed", ops={"one": op("failed", TAIL), "two": op("upstream_failed", "trigger")})
    assert summary(view).splitlines() == [
        "pipeline p: failed (1 failed, 1 upstream_failed)",
        "  one: failed: exit code 3: step one",
        "      step two",
        "      boom (logs: /s/runs/r/attempts/one@1)",
        "  two: upstream_failed: trigger",
        "  1 op(s) failed",
    ]
    out = io.StringIO()
    PlainProgress(out).status(change("one", "failed", message=TAIL))
    lines = out.getvalue().splitlines()
    assert lines[0].endswith("  one  failed: exit code 3: step one")
    assert lines[1:] == [" " * 12 + "step two", " " * 12 + "boom (logs: /s/runs/r/attempts/one@1)"]


def test_the_live_view_prints_a_failure_tail_indented_and_its_brackets_as_text() -> None:
    out = io.StringIO()
    progress = LiveProgress(out, pipeline="p")
    progress.console.width = 200
    progress.status(change("sweep[1]", "failed", message="exit code 1: [bold]x[/bold]\n[/] y"))
    assert out.getvalue().splitlines() == ["sweep[1] failed: exit code 1: [bold]x[/bold]", "    [/] y"]

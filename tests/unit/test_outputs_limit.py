"""An op's outputs file is read only up to ``max_outputs_bytes``: a job that writes gigabytes
to $FLOWD_OUTPUTS fails its attempt instead of filling the executor's memory."""

from __future__ import annotations

from pathlib import Path

from flowd.outputs import read_outputs_file
from flowd.runtime.executor import LocalExecutor


def test_outputs_file_over_the_limit_is_not_read_whole(tmp_path: Path) -> None:
    path = tmp_path / "outputs.json"
    path.write_text('{"blob": "' + "x" * 5000 + '"}')
    outputs, error = read_outputs_file(path, "$FLOWD_OUTPUTS", max_bytes=1000)
    assert outputs is None
    assert error == "$FLOWD_OUTPUTS: the outputs file is at least 1,001 bytes; the limit is 1,000 (setting max_outputs_bytes)"
    outputs, error = LocalExecutor._read_outputs(path, 10_000)
    assert error is None and outputs == {"blob": "x" * 5000}


def test_a_missing_outputs_file_is_no_outputs(tmp_path: Path) -> None:
    assert read_outputs_file(tmp_path / "nope.json", "x") == (None, None)

"""flowd.k8s.reports: the executor's read of an outputs report the ``flowd-artifacts`` sidecar
stored (outputs over a termination message), on a real folder store: the key comes from the
attempt, the size and digest must match the pod's pointer, a missing report is retried and then
refused with its location, and a pointer over ``max_outputs_bytes`` is refused before reading."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import anyio
import pytest

from flowd.artifacts import FolderStore
from flowd.k8s.config import Settings
from flowd.k8s.reports import ReportError, ReportReader


def _stored(root: Path, key: str, report: dict) -> dict:
    data = json.dumps(report).encode()
    (root / key).mkdir(parents=True)
    (root / key / "report.json").write_bytes(data)
    return {"at": f"{root}/{key}/report.json", "bytes": len(data), "sha256": hashlib.sha256(data).hexdigest()}


def test_the_report_of_that_attempt_is_read_and_checked(tmp_path: Path) -> None:
    report = {"location": "s3://b/r/train", "present": ["model"], "outputs": {"rows": list(range(3000))}}
    pointer = _stored(tmp_path, "r/train/.flowd/2", report)
    reader = ReportReader(Settings(), store=FolderStore(tmp_path), backoff=0.001)
    assert anyio.run(reader.read, "r", "train", 2, pointer) == report
    with pytest.raises(ReportError, match="is not the one the pod wrote"):
        anyio.run(reader.read, "r", "train", 2, {**pointer, "sha256": "0" * 64})
    with pytest.raises(ReportError, match=r"cannot read the outputs report .*r/train/\.flowd/3/report\.json"):
        anyio.run(reader.read, "r", "train", 3, pointer)
    with pytest.raises(ReportError, match="malformed"):
        anyio.run(reader.read, "r", "train", 2, {"at": "x"})


def test_a_pointer_over_the_outputs_limit_is_refused_before_reading(tmp_path: Path) -> None:
    reader = ReportReader(Settings(max_outputs_bytes=1000), store=FolderStore(tmp_path / "none"))
    with pytest.raises(ReportError, match="over the limit max_outputs_bytes=1000"):
        anyio.run(reader.read, "r", "train", 1, {"bytes": 10**8, "sha256": "ab"})


def test_what_is_stored_is_bounded_whatever_the_pointer_claims(tmp_path: Path) -> None:
    pointer = _stored(tmp_path, "r/train/.flowd/1", {"outputs": {"x": "y" * 5000}})
    (tmp_path / "r/train/.flowd/1/extra.bin").write_bytes(b"z" * 70000)
    reader = ReportReader(Settings(max_outputs_bytes=1000), store=FolderStore(tmp_path))
    with pytest.raises(ReportError, match=r"bytes are stored at .*, over the limit max_outputs_bytes=1000"):
        anyio.run(reader.read, "r", "train", 1, pointer)

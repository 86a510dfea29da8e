"""Differential test against Polyaxon 2.18's verdicts (POLYFLOW §10).

Walks ``shared/conformance/polyaxon-fixtures/MANIFEST.tsv`` (the project's sibling directory
``../shared``, or ``$FLOWD_SHARED``) and asserts that flowd's valid/invalid verdict equals the
reference verdict for every fixture, and that for invalid files flowd's messages contain the
oracle's match keyword where the manifest gives one. The fixtures are read in place, never
copied. Skipped, with the reason, when the shared directory is absent.
"""

from __future__ import annotations

import csv
import os
import re
from pathlib import Path

import pytest

from flowd.spec import compile_path

SHARED = Path(os.environ.get("FLOWD_SHARED") or Path(__file__).resolve().parents[3] / "shared")
CORPUS = SHARED / "conformance" / "polyaxon-fixtures"
MANIFEST = CORPUS / "MANIFEST.tsv"

# Fixtures where flowd deliberately gives another verdict than the reference, with the reason.
# Empty today: every [FLOWD] difference (docs/spec.md) is outside this corpus.
DELIBERATE_DIFFERENCES: dict[str, str] = {}

# The oracle's match keywords, and how flowd phrases the same failure.
KEYWORDS = {
    "Received non valid yaml": "invalid YAML",
    "invalid YAML": "invalid YAML",
}


def _rows() -> list[dict[str, str]]:
    if not MANIFEST.exists():
        return []
    with MANIFEST.open(newline="") as fh:
        return list(csv.DictReader(fh, delimiter="\t"))


ROWS = _rows()


@pytest.mark.skipif(not MANIFEST.exists(), reason=f"conformance corpus not found at {MANIFEST} (set FLOWD_SHARED)")
def test_manifest_is_complete() -> None:
    assert len(ROWS) == 60
    files = {str(p.relative_to(CORPUS)) for p in CORPUS.rglob("*") if p.suffix in (".yml", ".yaml", ".json")}
    assert files == {r["path"] for r in ROWS}


@pytest.mark.skipif(not MANIFEST.exists(), reason=f"conformance corpus not found at {MANIFEST} (set FLOWD_SHARED)")
@pytest.mark.parametrize("row", ROWS, ids=[r["path"] for r in ROWS])
def test_verdict_matches_reference(row: dict[str, str]) -> None:
    path = CORPUS / row["path"]
    # no hub: the corpus needs none (POLYFLOW §10.1), and urlRefs fail fast offline
    result = compile_path(path, hub=None, url_timeout=5.0)
    want_valid = row["reference_verdict"] == "valid"
    if row["path"] in DELIBERATE_DIFFERENCES:
        assert result.valid != want_valid, f"{row['path']} is listed as a deliberate difference but now agrees"
        return
    messages = "\n".join(f"{d.location}: {d.message}" for d in result.errors)
    assert result.valid == want_valid, f"{row['path']}: reference says {row['reference_verdict']}; flowd:\n{messages}"
    if want_valid:
        assert result.op is not None
        return
    match = re.search(r"match: `([^`]+)`", row["error_class_or_reason"])
    if "invalid YAML" in row["error_class_or_reason"]:
        keyword = "invalid YAML"
    elif match:
        keyword = KEYWORDS.get(match.group(1), match.group(1))
    else:
        return
    assert keyword.lower() in messages.lower(), f"{row['path']}: expected {keyword!r} in:\n{messages}"
    yaml_errors = [d for d in result.errors if "invalid YAML" in d.message]
    for d in yaml_errors:
        assert d.line is not None and d.column is not None

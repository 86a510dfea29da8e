"""The docs stand on their own and match the code where it is easy to drift."""

from __future__ import annotations

import re
from pathlib import Path

from flowd.cli import build_parser
from flowd.daemon.config import DaemonConfig

ROOT = Path(__file__).resolve().parents[2]
DOCS = [ROOT / "README.md", ROOT / "proto" / "README.md", *sorted((ROOT / "docs").glob("*.md"))]


def test_docs_do_not_send_readers_outside_the_repository() -> None:
    offenders = [f"{doc.name}:{i}" for doc in DOCS for i, line in enumerate(doc.read_text().splitlines(), 1)
                 if "../shared" in line or "POLYFLOW" in line]
    assert offenders == []


def test_serve_help_shows_the_defaults_the_daemon_uses() -> None:
    text = build_parser()._subparsers._group_actions[0].choices["serve"].format_help()  # type: ignore[union-attr]
    text = " ".join(text.split())
    defaults = DaemonConfig()
    for field in ("brokers", "prefix", "group_id", "metrics_port", "partitions", "retention"):
        assert f"default {getattr(defaults, field)}" in text, field
    assert "default ''" not in text and "~/.local/state/flowd/daemon" in text


def test_the_wire_docs_name_the_diagnostic_fields_the_code_has() -> None:
    from flowd.daemon.wire import Diagnostic

    readme = (ROOT / "proto" / "README.md").read_text()
    listed = re.search(r"`diagnostics` \(([^)]*)\)", " ".join(readme.split()))
    assert listed is not None
    assert {f.strip(" `") for f in listed[1].split(",")} == set(Diagnostic.__struct_fields__)

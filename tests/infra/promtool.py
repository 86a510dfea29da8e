"""promtool (Prometheus' checker for metrics, rules and rule unit tests), built from the Go module
proxy into the versioned binary cache like etcd and kwok: ``python -m tests.infra build promtool``.
The tests of deploy/'s alert rules and dashboard run it; nothing else needs it."""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from pathlib import Path

from .common import InfraUnavailable, testbin

PROMTOOL_VERSION = os.environ.get("FLOWD_PROMTOOL_VERSION", "v0.316.0")
MODULE = "github.com/prometheus/prometheus/cmd/promtool"


def promtool_bin() -> Path:
    return testbin() / f"promtool-{PROMTOOL_VERSION}" / "promtool"


def missing() -> bool:
    return not os.access(promtool_bin(), os.X_OK)


def build() -> None:
    """``go install`` promtool at its version (a few minutes cold; -p 1 spares a shared CPU).
    Idempotent: does nothing when the binary is cached. Raises InfraUnavailable on failure."""
    if not missing():
        return
    if shutil.which("go") is None:
        raise InfraUnavailable("promtool: `go` is not installed and the binary is missing")
    out = promtool_bin().parent
    out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        env = dict(os.environ, GOTOOLCHAIN="local", CGO_ENABLED="0", GOFLAGS="-buildvcs=false", GOBIN=tmp)
        r = subprocess.run(["go", "install", "-p", os.environ.get("GO_P", "1"), "-trimpath", "-ldflags", "-s -w",
                            f"{MODULE}@{PROMTOOL_VERSION}"], env=env, cwd=tmp)
        if r.returncode != 0:
            raise InfraUnavailable(f"promtool: go install {MODULE}@{PROMTOOL_VERSION} failed (exit {r.returncode})")
        shutil.move(str(Path(tmp) / "promtool"), promtool_bin())  # in one step: never a half-written binary

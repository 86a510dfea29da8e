"""A real S3-compatible server for tests: gofakes3 (github.com/johannesboyne/gofakes3, MIT; a
small S3 server over a pluggable backend, here its filesystem backend), built from the Go module
proxy into the versioned binary cache like promtool: ``python -m tests.infra build s3``.

MinIO's server is AGPL (not used); SeaweedFS would do too but builds for many minutes, where
gofakes3 builds in seconds. The server listens on 127.0.0.1 on a free port with a throw-away data
directory and one bucket; it is stopped by PID.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

from .common import InfraUnavailable, free_port, pid_alive, spawn, stop_pid, testbin, wait_until

GOFAKES3_VERSION = os.environ.get("FLOWD_GOFAKES3_VERSION", "v1.2.0")
MODULE = "github.com/johannesboyne/gofakes3/cmd/gofakes3"
BUCKET = "flowd-test"
# gofakes3 checks no signature; any key pair signs requests (the client still signs them)
ACCESS_KEY = "flowd-test-key"
SECRET_KEY = "flowd-test-secret"


def s3_bin() -> Path:
    return testbin() / f"gofakes3-{GOFAKES3_VERSION}" / "gofakes3"


def missing() -> bool:
    return not os.access(s3_bin(), os.X_OK)


def build() -> None:
    """``go install`` gofakes3 at its version (~1 min cold). Idempotent. Raises InfraUnavailable."""
    if not missing():
        return
    if shutil.which("go") is None:
        raise InfraUnavailable("s3: `go` is not installed and the gofakes3 binary is missing")
    out = s3_bin().parent
    out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        env = dict(os.environ, GOTOOLCHAIN="local", CGO_ENABLED="0", GOFLAGS="-buildvcs=false", GOBIN=tmp)
        r = subprocess.run(["go", "install", "-p", os.environ.get("GO_P", "1"), "-trimpath", "-ldflags", "-s -w",
                            f"{MODULE}@{GOFAKES3_VERSION}"], env=env, cwd=tmp)
        if r.returncode != 0:
            raise InfraUnavailable(f"s3: go install {MODULE}@{GOFAKES3_VERSION} failed (exit {r.returncode})")
        shutil.move(str(Path(tmp) / "gofakes3"), s3_bin())


@dataclass
class S3Server:
    run_dir: Path
    port: int = 0
    bucket: str = BUCKET
    pid: int | None = None
    start_seconds: float = 0.0
    _proc: subprocess.Popen | None = field(default=None, repr=False)

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def log(self) -> Path:
        return self.run_dir / "gofakes3.log"

    def env(self) -> dict[str, str]:
        """What a client needs: credentials the way a deployment passes them (the environment)."""
        return {"AWS_ACCESS_KEY_ID": ACCESS_KEY, "AWS_SECRET_ACCESS_KEY": SECRET_KEY, "AWS_REGION": "us-east-1",
                "FLOWD_ARTIFACTS_ENDPOINT": self.endpoint}

    def describe(self) -> str:
        return f"s3 {self.endpoint} bucket {self.bucket} (pid {self.pid}, data {self.run_dir})"

    async def start(self, timeout: float = 30.0) -> S3Server:
        build()
        t = time.monotonic()
        data = self.run_dir / "data"
        data.mkdir(parents=True, exist_ok=True)
        self.port = self.port or free_port()
        self._proc = spawn([str(s3_bin()), "-backend", "fs", "-fs.path", str(data), "-fs.create",
                            "-host", f"127.0.0.1:{self.port}", "-initialbucket", self.bucket], self.log)
        self.pid = self._proc.pid

        async def ready() -> bool:
            def probe() -> bool:
                try:
                    with urllib.request.urlopen(f"{self.endpoint}/{self.bucket}?list-type=2", timeout=1) as r:
                        return r.status == 200
                except urllib.error.HTTPError as e:
                    return e.code < 500
            return await asyncio.to_thread(probe)

        await wait_until(ready, timeout=timeout, what="s3 (gofakes3)", alive=lambda: pid_alive(self.pid or 0),
                         log=self.log)
        self.start_seconds = time.monotonic() - t
        return self

    def stop(self) -> None:
        stop_pid(self.pid, term_timeout=5)
        if self._proc is not None:
            try:
                self._proc.wait(timeout=1)
            except subprocess.TimeoutExpired:
                pass

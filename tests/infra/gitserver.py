"""A real git server for the init-step tests: git's own smart-HTTP backend (``git http-backend``,
shipped with git in /usr/lib/git-core) behind a small HTTP front that asks for Basic auth, started
on loopback and stopped by PID like the other components. Nothing to build: ``python -m
tests.infra build git`` only checks that the backend is installed.

    with GitServer(tmp_path, user="ci", password="s3cret") as srv:
        make_repo(srv.root / "models.git", {"train.py": "print(1)"}, branches={"v2": {...}})
        url = srv.url("models.git")   # http://127.0.0.1:PORT/models.git

The credentials reach the server process through its environment, never its argv.
"""

from __future__ import annotations

import base64
import hmac
import os
import shutil
import subprocess
import sys
import tempfile
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from .common import InfraUnavailable, free_port, log_tail, pid_alive, port_open, spawn, stop_pid

GIT_CORE = Path(os.environ.get("FLOWD_GIT_CORE", "/usr/lib/git-core"))
BACKEND = GIT_CORE / "git-http-backend"


def missing() -> bool:
    return shutil.which("git") is None or not os.access(BACKEND, os.X_OK)


def build() -> None:
    if missing():
        raise InfraUnavailable(f"git server: needs git and {BACKEND} (apt-get install git)")


class GitServer:
    def __init__(self, run_dir: Path, *, user: str | None = None, password: str | None = None) -> None:
        self.run_dir = Path(run_dir)
        self.root = self.run_dir / "repos"
        self.user, self.password = user, password
        self.port = 0
        self.proc: subprocess.Popen[bytes] | None = None
        self.log = self.run_dir / "gitserver.log"

    def url(self, repo: str) -> str:
        return f"http://127.0.0.1:{self.port}/{repo}"

    def start(self) -> GitServer:
        build()
        self.root.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        env = dict(os.environ, GITSERVER_USER=self.user or "", GITSERVER_PASSWORD=self.password or "")
        self.proc = spawn([sys.executable, "-m", "tests.infra.gitserver", str(self.root), str(self.port)], self.log,
                          env=env, cwd=Path(__file__).resolve().parents[2])
        deadline = time.monotonic() + 15
        while not port_open(self.port):
            if not pid_alive(self.proc.pid) or time.monotonic() > deadline:
                self.stop()
                raise InfraUnavailable(f"git server did not start: {log_tail(self.log)}")
            time.sleep(0.05)
        return self

    def stop(self) -> None:
        if self.proc is not None:
            stop_pid(self.proc.pid, term_timeout=5)
            self.proc.wait(timeout=5)
            self.proc = None

    def __enter__(self) -> GitServer:
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()


def make_repo(path: Path, files: dict[str, str], *, branches: dict[str, dict[str, str]] | None = None) -> str:
    """A bare repository at ``path`` with one commit of ``files`` on ``main`` and one commit per
    extra branch on top of it; returns the main commit's sha."""
    env = dict(os.environ, GIT_AUTHOR_NAME="t", GIT_AUTHOR_EMAIL="t@t", GIT_COMMITTER_NAME="t",
               GIT_COMMITTER_EMAIL="t@t")
    with tempfile.TemporaryDirectory() as work:

        def git(*args: str) -> str:
            return subprocess.run(["git", *args], cwd=work, env=env, check=True, capture_output=True,
                                  text=True).stdout.strip()

        git("init", "-q", "-b", "main")
        for name, text in files.items():
            (Path(work) / name).parent.mkdir(parents=True, exist_ok=True)
            (Path(work) / name).write_text(text)
        git("add", "-A")
        git("commit", "-qm", "main")
        sha = git("rev-parse", "HEAD")
        for branch, extra in (branches or {}).items():
            git("checkout", "-q", "-b", branch, "main")
            for name, text in extra.items():
                (Path(work) / name).write_text(text)
            git("add", "-A")
            git("commit", "-qm", branch)
        git("checkout", "-q", "main")
        subprocess.run(["git", "clone", "-q", "--bare", work, str(path)], env=env, check=True)
        subprocess.run(["git", "-C", str(path), "config", "http.receivepack", "false"], check=True)
    return sha


# ----------------------------------------------------------------------------- the server


class _Handler(BaseHTTPRequestHandler):
    root: Path
    expected: str | None  # "Basic <b64>" or None (no auth)

    def _authorized(self) -> bool:
        if self.expected is None:
            return True
        got = self.headers.get("Authorization") or ""
        return hmac.compare_digest(got.encode(), self.expected.encode())

    def _cgi(self) -> None:
        if not self._authorized():
            self.send_response(401)
            self.send_header("WWW-Authenticate", 'Basic realm="flowd-test"')
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        path, _, query = self.path.partition("?")
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        env = {
            "GIT_PROJECT_ROOT": str(self.root), "GIT_HTTP_EXPORT_ALL": "1", "PATH_INFO": path,
            "QUERY_STRING": query, "REQUEST_METHOD": self.command, "CONTENT_TYPE": self.headers.get("Content-Type", ""),
            "CONTENT_LENGTH": str(length), "REMOTE_ADDR": self.client_address[0], "REMOTE_USER": "flowd",
            "HTTP_GIT_PROTOCOL": self.headers.get("Git-Protocol", ""), "PATH": os.environ.get("PATH", ""),
            "HTTP_CONTENT_ENCODING": self.headers.get("Content-Encoding", ""),
        }
        r = subprocess.run([str(BACKEND)], input=body, env=env, capture_output=True)
        head, _, payload = r.stdout.partition(b"\r\n\r\n")
        if not _:
            head, _, payload = r.stdout.partition(b"\n\n")
        status = 200
        headers = []
        for line in head.decode(errors="replace").splitlines():
            key, _, value = line.partition(":")
            if key.lower() == "status":
                status = int(value.strip().split()[0])
            elif key:
                headers.append((key, value.strip()))
        self.send_response(status)
        for key, value in headers:
            self.send_header(key, value)
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    do_GET = _cgi
    do_POST = _cgi

    def log_message(self, format: str, *args: Any) -> None:
        sys.stderr.write("%s %s\n" % (self.address_string(), format % args))  # noqa: UP031


def serve(root: str, port: int) -> None:
    user, password = os.environ.get("GITSERVER_USER"), os.environ.get("GITSERVER_PASSWORD")
    _Handler.root = Path(root)
    _Handler.expected = ("Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()) if user else None
    ThreadingHTTPServer(("127.0.0.1", port), _Handler).serve_forever()


if __name__ == "__main__":
    serve(sys.argv[1], int(sys.argv[2]))

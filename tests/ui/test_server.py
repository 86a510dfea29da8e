"""The UI's HTTP API without a browser: JSON routes, logs, and the token on actions."""

from __future__ import annotations

import json
import threading
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from flowd.ui.local import LocalBackend
from flowd.ui.server import make_server


@pytest.fixture
def serve(tmp_path: Path) -> Iterator[Any]:
    servers = []

    def start(token: str | None) -> str:
        server = make_server(LocalBackend(tmp_path / "state"), "127.0.0.1", 0, token=token)
        servers.append(server)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        return f"http://127.0.0.1:{server.server_address[1]}"

    yield start
    for server in servers:
        server.shutdown()
        server.server_close()


def call(url: str, *, method: str = "GET", token: str | None = None) -> tuple[int, Any]:
    request = urllib.request.Request(url, method=method, data=b"" if method == "POST" else None)
    if token:
        request.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(request, timeout=5) as resp:
            return resp.status, json.loads(resp.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


def test_read_only_by_default(serve: Any) -> None:
    base = serve(None)
    assert call(base + "/api/config")[1]["actions"] is False
    assert call(base + "/api/runs") == (200, {"runs": []})
    assert call(base + "/api/runs/nope")[0] == 404
    assert call(base + "/api/runs?since=yesterday")[0] == 400
    assert call(base + "/api/runs/nope/stop", method="POST")[0] == 403


def test_actions_need_the_token(serve: Any) -> None:
    base = serve("s3cret")
    assert call(base + "/api/config")[1]["actions"] is True
    assert call(base + "/api/runs/x/stop", method="POST")[0] == 401
    assert call(base + "/api/runs/x/stop", method="POST", token="wrong")[0] == 401
    assert call(base + "/api/runs/x/stop", method="POST", token="s3cret")[0] == 409  # no such run going on
    assert call(base + "/api/runs/x/launch", method="POST", token="s3cret")[0] == 404

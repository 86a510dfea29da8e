"""The UI's HTTP server: the standard library's threading server, JSON under ``/api``, the
static pages under ``/``. Read-only unless actions are enabled with a token: then ``POST
/api/runs/RUN/{stop,resume,approve}`` need ``Authorization: Bearer TOKEN``."""

from __future__ import annotations

import hmac
import json
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from importlib import resources
from typing import Any
from urllib.parse import parse_qs, unquote, urlparse

__all__ = ["make_server"]

STATIC = {"/": "index.html", "/run": "run.html", "/app.css": "app.css", "/runs.js": "runs.js", "/run.js": "run.js"}
TYPES = {".html": "text/html; charset=utf-8", ".css": "text/css", ".js": "application/javascript"}


def make_server(backend: Any, host: str, port: int, *, token: str | None = None) -> ThreadingHTTPServer:
    """``token`` set: the action routes are enabled and need it."""

    class Handler(BaseHTTPRequestHandler):
        server_version = "flowd-ui"

        def log_message(self, format: str, *args: Any) -> None:  # quiet: a polling page asks every second
            pass

        def _send(self, status: int, body: bytes, content_type: str) -> None:
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            self.send_header("Cache-Control", "no-store")
            self.end_headers()
            self.wfile.write(body)

        def _json(self, status: int, data: Any) -> None:
            self._send(status, json.dumps(data).encode(), "application/json")

        def do_GET(self) -> None:
            url = urlparse(self.path)
            query = {k: v[-1] for k, v in parse_qs(url.query).items()}
            path = url.path
            if path in STATIC:
                name = STATIC[path]
                body = resources.files("flowd.ui").joinpath("static", name).read_bytes()
                self._send(200, body, TYPES[name[name.rindex("."):]])
            elif path == "/api/config":
                self._json(200, {"source": backend.kind, "where": backend.where, "actions": token is not None,
                                 "approve": token is not None and getattr(backend, "approves_live", False)})
            elif path == "/api/runs":
                try:
                    runs = backend.runs(status=query.get("status") or None, pipeline=query.get("pipeline") or None,
                                        since=query.get("since") or None)
                except ValueError as exc:
                    self._json(400, {"error": str(exc)})
                    return
                self._json(200, {"runs": runs})
            elif path.startswith("/api/runs/") and path.endswith("/logs"):
                run_id = unquote(path[len("/api/runs/"):-len("/logs")])
                attempt = int(query["attempt"]) if query.get("attempt", "").isdigit() else None
                text = backend.logs(run_id, op=query.get("op", ""), attempt=attempt, stream=query.get("stream", "all"))
                if text is None:
                    self._json(404, {"error": "no such run"})
                else:
                    self._send(200, text.encode(), "text/plain; charset=utf-8")
            elif path.startswith("/api/runs/"):
                collapsed = frozenset(p for p in query.get("collapsed", "").split(",") if p)
                detail = backend.run(unquote(path[len("/api/runs/"):]), collapsed=collapsed)
                if detail is None:
                    self._json(404, {"error": "no such run"})
                else:
                    self._json(200, detail)
            else:
                self._json(404, {"error": "not found"})

        def do_POST(self) -> None:
            path = urlparse(self.path).path
            if token is None:
                self._json(403, {"error": "actions are disabled (start flowd ui with --allow-actions and a token)"})
                return
            given = self.headers.get("Authorization", "").removeprefix("Bearer ").strip()
            if not hmac.compare_digest(given.encode(), token.encode()):
                self._json(401, {"error": "a valid token is needed (Authorization: Bearer TOKEN)"})
                return
            parts = path.strip("/").split("/")  # api runs RUN action
            if len(parts) != 4 or parts[:2] != ["api", "runs"]:
                self._json(404, {"error": "not found"})
                return
            run_id, action = unquote(parts[2]), parts[3]
            length = int(self.headers.get("Content-Length") or 0)
            body = json.loads(self.rfile.read(min(length, 65536)) or b"{}") if length else {}
            if action == "stop":
                status, message = backend.stop(run_id)
            elif action == "resume":
                status, message = backend.resume(run_id)
            elif action == "approve":
                status, message = backend.approve(run_id, str(body.get("op", "")))
            else:
                self._json(404, {"error": f"unknown action {action!r}"})
                return
            self._json(status, {"message": message})

    return ThreadingHTTPServer((host, port), Handler)

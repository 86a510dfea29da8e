"""``/metrics``, ``/healthz``, ``/readyz`` on a tiny HTTP/1.0 server over asyncio streams.

Three GET routes and nothing else do not justify a web framework dependency: each request is
read up to its blank line, answered, and the connection closed.

* ``/healthz``: 200 while the daemon's task tree runs (the process answers at all).
* ``/readyz``: 200 once the consumer has its assignment and every assigned partition is
  restored and replayed; 503 (with the partitions still recovering) otherwise.
* ``/metrics``: Prometheus text format of the daemon's registry.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from typing import TYPE_CHECKING

import anyio
import anyio.abc
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

if TYPE_CHECKING:
    from prometheus_client import CollectorRegistry

# (ready, one line saying why or why not): the daemon's answer to /readyz
Health = Callable[[], tuple[bool, str]]

__all__ = ["serve_http"]


def _response(status: str, body: bytes, content_type: str = "text/plain; charset=utf-8") -> bytes:
    head = f"HTTP/1.0 {status}\r\nContent-Type: {content_type}\r\nContent-Length: {len(body)}\r\nConnection: close\r\n\r\n"
    return head.encode() + body


def route(health: Health, registry: CollectorRegistry, path: str) -> bytes:
    path = path.split("?", 1)[0]
    if path == "/healthz":
        return _response("200 OK", b"ok\n")
    if path == "/readyz":
        ready, what = health()
        return _response("200 OK" if ready else "503 Service Unavailable", f"{what}\n".encode())
    if path == "/metrics":
        return _response("200 OK", generate_latest(registry), CONTENT_TYPE_LATEST)
    return _response("404 Not Found", b"not found\n")


async def serve_http(health: Health, registry: CollectorRegistry, host: str, port: int, *,
                     task_status: anyio.abc.TaskStatus[int] = anyio.TASK_STATUS_IGNORED) -> None:
    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            with anyio.fail_after(5):
                request = await reader.readline()
                while (await reader.readline()) not in (b"\r\n", b"\n", b""):
                    pass
            parts = request.decode("latin-1").split()
            if len(parts) < 2 or parts[0] not in ("GET", "HEAD"):
                writer.write(_response("405 Method Not Allowed", b"GET only\n"))
            else:
                writer.write(route(health, registry, parts[1]))
            await writer.drain()
        except (TimeoutError, ConnectionError):
            pass
        finally:
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()

    server = await asyncio.start_server(handle, host, port)
    try:
        task_status.started(server.sockets[0].getsockname()[1])
        await anyio.sleep_forever()
    finally:
        server.close()

"""urlRef through the daemon against the real broker: off by default, refused on a loopback
address reached by name, fetched (off the partition's path) when a prefix names the address.
The component is served by a real HTTP server on 127.0.0.1."""

from __future__ import annotations

import http.server
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import anyio
import pytest

from flowd.daemon.testing import DaemonProcess, EventCollector, test_config
from tests.integration.test_daemon_inprocess import serving, submit

pytestmark = [pytest.mark.integration, pytest.mark.kafka, pytest.mark.asyncio(loop_scope="session")]

REQUESTS: list[str] = []

COMPONENT = b"""
version: 1.1
kind: component
name: remote
run: {kind: job, container: {image: x, command: [sh, -c, "true"]}}
"""


@pytest.fixture(scope="module")
def component_server() -> Iterator[int]:
    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            REQUESTS.append(self.path)
            if self.path == "/slow.yaml":
                time.sleep(2.0)
            self.send_response(200 if self.path in ("/c.yaml", "/slow.yaml") else 404)
            self.send_header("Content-Length", str(len(COMPONENT)))
            self.end_headers()
            self.wfile.write(COMPONENT)

        def log_message(self, *args: object) -> None:
            pass

    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    yield httpd.server_address[1]
    httpd.shutdown()


def spec(url: str) -> str:
    return f"version: 1.1\nkind: operation\nname: fetched\nurlRef: {url}\n"


@pytest.mark.parametrize("allow,status,message", [
    ([], "failed", "urlRef is off unless the daemon's url_ref_allow"),
    (["http://localhost:{port}/"], "failed", "resolves to a loopback address 127.0.0.1"),
    (["http://127.0.0.1:{port}/"], "succeeded", None),
], ids=["off-by-default", "loopback-by-name", "allowed-address"])
async def test_urlref_in_the_daemon(kafka_broker, component_server: int, tmp_path: Path, allow: list[str],
                                    status: str, message: str | None) -> None:
    port = component_server
    host = "localhost" if any("localhost" in a for a in allow) else "127.0.0.1"
    config = test_config(kafka_broker.bootstrap, name="url", state_dir=str(tmp_path),
                         url_ref_allow=[a.format(port=port) for a in allow], url_ref_timeout=2.0)
    async with serving(config) as (_daemon, events):
        run_id = await submit(config, spec=spec(f"http://{host}:{port}/c.yaml"), run_id=str(uuid.uuid4()))
        done = await events.wait_done(run_id)
        assert done.status == status, done.message
        if message:
            assert message in (done.message or "")


async def test_a_daemon_killed_mid_fetch_leaves_the_fetch_to_the_next_owner(kafka_broker, component_server: int,
                                                                          tmp_path: Path) -> None:
    """kill -9 while the document is on its way: the run is in the partition's log (and, once
    committed, in its fetching set); the next daemon fetches again and the run completes once."""
    port = component_server
    allow = f"http://127.0.0.1:{port}/"
    config = test_config(kafka_broker.bootstrap, name="urlkill", state_dir=str(tmp_path), executor="local",
                         url_ref_allow=[allow])
    env = {"FLOWD_URL_REF_ALLOW": allow, "FLOWD_LOCAL_DETACH": "false"}
    first = DaemonProcess(config, log_path=tmp_path / "serve-1.log", env=env).start()
    events = EventCollector(config)
    async with anyio.create_task_group() as tg:
        try:
            await first.wait_ready()
            await tg.start(events.run)
            before = REQUESTS.count("/slow.yaml")
            run_id = await submit(config, spec=spec(f"{allow}slow.yaml"), run_id=str(uuid.uuid4()))
            with anyio.fail_after(20):
                while REQUESTS.count("/slow.yaml") == before:
                    await anyio.sleep(0.05)
            first.kill9()  # the fetch was in flight
            second = DaemonProcess(config, log_path=tmp_path / "serve-2.log", env=env).start()
            try:
                await second.wait_ready(timeout=60)
                done = await events.wait_done(run_id, timeout=60)
                assert done.status == "succeeded", done.message
                assert REQUESTS.count("/slow.yaml") >= before + 2  # fetched again by the new owner
                await anyio.sleep(1.0)
                assert len(events.completions(run_id)) == 1
            finally:
                second.terminate()
        finally:
            if first.proc is not None and first.proc.poll() is None:
                first.terminate()
            tg.cancel_scope.cancel()

"""urlRef in the daemon (flowd.daemon.urlrefs): allowlist, the resolved-address check, limits,
redirects, the fetch-then-resubmit path through the pure partition step, and no echo of fetched
content. HTTP goes to a real server on 127.0.0.1 (in a thread)."""

from __future__ import annotations

import http.server
import threading
import time
from collections.abc import Iterator
from typing import ClassVar

import msgspec
import pytest

from flowd.daemon import wire
from flowd.daemon.compiler import compile_with, make_compiler
from flowd.daemon.partition import Outcome, PartitionState, Record
from flowd.daemon.urlrefs import (
    UrlPolicy,
    _address_refusal,
    fetch_document,
    matching_prefix,
    resolve_submission,
)
from flowd.engine import StartOp
from flowd.spec.refs import RefError

COMPONENT = """
version: 1.1
kind: component
name: remote
run: {kind: job, container: {image: x, command: [sh, -c, "true"]}}
"""
# invalid: its keys must not come back in diagnostics
BAD_COMPONENT = """
version: 1.1
kind: component
name: remote
secretKeyFromTheServer: 1
run: {kind: job, container: {image: x, command: [sh, -c, "true"]}}
"""


class Handler(http.server.BaseHTTPRequestHandler):
    routes: ClassVar[dict[str, tuple[int, dict[str, str], bytes, float]]] = {}

    def do_GET(self) -> None:
        status, headers, body, delay = self.routes.get(self.path, (404, {}, b"", 0.0))
        time.sleep(delay)
        self.send_response(status)
        for k, v in headers.items():
            self.send_header(k, v)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture(scope="module")
def server() -> Iterator[str]:
    class Server(http.server.ThreadingHTTPServer):
        def handle_error(self, request: object, client_address: object) -> None:
            pass  # a client that gave up (the size and time limits) is expected here

    httpd = Server(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    base = f"http://127.0.0.1:{httpd.server_address[1]}"
    Handler.routes = {
        "/c.yaml": (200, {}, COMPONENT.encode(), 0.0),
        "/bad.yaml": (200, {}, BAD_COMPONENT.encode(), 0.0),
        "/big.yaml": (200, {}, b"#" * 5000, 0.0),
        "/slow.yaml": (200, {}, COMPONENT.encode(), 2.0),
        "/moved": (302, {"Location": "/c.yaml"}, b"", 0.0),
        "/to-metadata": (302, {"Location": "http://169.254.169.254/latest/meta-data/"}, b"", 0.0),
    }
    Handler.routes["/nested.yaml"] = (200, {}, f"version: 1.1\nkind: operation\nurlRef: {base}/c.yaml\n".encode(), 0.0)
    yield base
    httpd.shutdown()


def spec(url: str) -> str:
    return f"version: 1.1\nkind: operation\nname: op\nurlRef: {url}\n"


def test_prefixes_match_at_path_boundaries() -> None:
    allow = ["https://hub.example.com/components/", "http://10.0.0.5:8080/x"]
    assert matching_prefix("https://hub.example.com/components/a.yaml", allow) == allow[0]
    assert matching_prefix("https://HUB.example.com/components/a.yaml", allow) == allow[0]
    assert matching_prefix("https://hub.example.com.evil.org/components/a.yaml", allow) is None
    assert matching_prefix("https://hub.example.com:444/components/a.yaml", allow) is None
    assert matching_prefix("http://hub.example.com/components/a.yaml", allow) is None
    assert matching_prefix("https://user@hub.example.com/components/a.yaml", allow) is None
    assert matching_prefix("http://10.0.0.5:8080/x/y", allow) == allow[1]
    assert matching_prefix("http://10.0.0.5:8080/xy", allow) is None


@pytest.mark.parametrize("ip,kind", [
    ("127.0.0.1", "loopback"), ("::1", "loopback"), ("169.254.169.254", "link-local"), ("fe80::1", "link-local"),
    ("10.1.2.3", "private"), ("192.168.0.1", "private"), ("::ffff:127.0.0.1", "loopback"), ("0.0.0.0", "unspecified"),
    ("100.64.0.1", "non-public"),
])
def test_non_public_addresses_are_refused_unless_named(ip: str, kind: str) -> None:
    policy = UrlPolicy(allow=["https://hub.example.com/"])
    assert kind in (_address_refusal(ip, "https://hub.example.com/", policy) or "")
    assert _address_refusal("8.8.8.8", "https://hub.example.com/", policy) is None
    host = f"[{ip}]" if ":" in ip else ip
    assert _address_refusal(ip, f"http://{host}/", policy) is None or ip.startswith("::ffff")
    assert _address_refusal("10.1.2.3", "https://hub.example.com/", UrlPolicy(allow_networks=["10.0.0.0/8"])) is None


def test_fetch_checks_the_resolved_address_and_the_limits(server: str) -> None:
    port = server.rsplit(":", 1)[1]
    named = UrlPolicy(allow=[server + "/"], timeout=0.5, max_bytes=1000)
    assert "name: remote" in fetch_document(f"{server}/c.yaml", named)
    # the same server through a name that resolves to loopback: refused
    with pytest.raises(RefError, match="resolves to a loopback address 127.0.0.1"):
        fetch_document(f"http://localhost:{port}/c.yaml", UrlPolicy(allow=[f"http://localhost:{port}/"]))
    with pytest.raises(RefError, match="url_ref_max_bytes"):
        fetch_document(f"{server}/big.yaml", named)
    t0 = time.monotonic()
    with pytest.raises(RefError, match="timed out"):
        fetch_document(f"{server}/slow.yaml", named)
    assert time.monotonic() - t0 < 1.5
    assert "name: remote" in fetch_document(f"{server}/moved", named)  # a redirect inside the allowlist
    with pytest.raises(RefError, match="matches no prefix"):
        fetch_document(f"{server}/to-metadata", named)  # a redirect out of it
    with pytest.raises(RefError, match="matches no prefix"):
        fetch_document("http://169.254.169.254/latest/meta-data/", named)


def submission(text: str, **fields: object) -> wire.Submission:
    return wire.Submission(run_id="r1", time=1.0, spec=text, source="s.yaml", **fields)  # type: ignore[arg-type]


def apply(state: PartitionState, msg: wire.Submission, offset: int = 0) -> Outcome:
    out = Outcome()
    state.apply(Record("flowd.runs", 0, offset, b"r1", wire.encode(msg), 1.0), out)
    return out


def test_urlref_is_off_by_default_and_nothing_is_fetched(server: str) -> None:
    state = PartitionState(0, compiler=make_compiler(None))
    out = apply(state, submission(spec(f"{server}/c.yaml")))
    assert not out.fetches
    done = [e for _, e in out.events if isinstance(e, wire.CompletionEvent)]
    assert done and done[0].status == "failed" and "url_ref_allow" in (done[0].message or "")


def test_fetch_then_resubmit_through_the_pure_step(server: str) -> None:
    policy = UrlPolicy(allow=[server + "/"], timeout=1.0)
    compiler = make_compiler(None, policy)
    state = PartitionState(0, compiler=compiler)
    msg = submission(spec(f"{server}/nested.yaml"))
    out = apply(state, msg)
    # not fetched on this path: recorded (and snapshotted) as fetching
    assert out.fetches == [msg] and not out.events and "r1" in state.daemon.fetching
    assert apply(state, msg, 1).ignored == 1  # a redelivery while fetching
    # the fetching set survives a snapshot and restore (the next owner fetches again)
    restored = PartitionState.restore(wire.decode_snapshot(wire.encode_snapshot(state.snapshot(offset=2, time=1.0))),
                                      compiler=compiler)
    assert restored.daemon.fetching == {"r1": msg}
    resolved = resolve_submission(msg, policy, lambda m, f: compile_with(m, f, None))
    assert sorted(resolved.url_documents) == [f"{server}/c.yaml", f"{server}/nested.yaml"]
    out = apply(state, resolved, 2)
    assert [c.run_id for c in out.effects if isinstance(c, StartOp)] == ["r1"]
    assert "r1" not in state.daemon.fetching
    assert apply(state, resolved, 3).ignored == 1  # a second result (a fetch re-issued after a crash)


def test_refused_fetches_fail_the_run_with_the_reason(server: str) -> None:
    port = server.rsplit(":", 1)[1]
    url = f"http://localhost:{port}/c.yaml"
    policy = UrlPolicy(allow=[f"http://localhost:{port}/"])
    state = PartitionState(0, compiler=make_compiler(None, policy))
    msg = submission(spec(url))
    assert apply(state, msg).fetches
    resolved = resolve_submission(msg, policy, lambda m, f: compile_with(m, f, None))
    assert not resolved.url_documents and "loopback" in resolved.url_errors[url]
    done = [e for _, e in apply(state, resolved, 1).events if isinstance(e, wire.CompletionEvent)]
    assert done[0].status == "failed" and "loopback address 127.0.0.1" in (done[0].message or "")


def test_fetched_content_is_not_echoed(server: str) -> None:
    url = f"{server}/bad.yaml"
    policy = UrlPolicy(allow=[server + "/"])
    msg = submission(spec(url))
    resolved = resolve_submission(msg, policy, lambda m, f: compile_with(m, f, None))
    state = PartitionState(0, compiler=make_compiler(None, policy))
    done = next(e for _, e in apply(state, resolved).events if isinstance(e, wire.CompletionEvent))
    assert done.status == "failed"
    text = msgspec.json.encode(done).decode()
    assert "secretKeyFromTheServer" not in text
    assert all(d.path != url for d in done.diagnostics)

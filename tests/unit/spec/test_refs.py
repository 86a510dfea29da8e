"""Reference resolution: pathRef, urlRef (against a local HTTP server), hubRef forms, cycles."""

from __future__ import annotations

import http.server
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import ClassVar

import pytest

from flowd.spec import compile_text
from flowd.spec.refs import RefError, hub_candidates, locate_hub

FIX = Path(__file__).resolve().parents[2] / "fixtures" / "spec"
HUB = FIX / "hub"

STEP = b"""
kind: component
name: remote-step
inputs: [{name: n, type: int}]
outputs: [{name: out, type: str}]
run: {kind: job, container: {image: busybox, command: [echo, "{{ n }}"]}}
"""


class _Handler(http.server.BaseHTTPRequestHandler):
    routes: ClassVar[dict[str, tuple[int, bytes]]] = {
        "/step.yaml": (200, STEP),
        "/bad.yaml": (200, b"kind: component\nrun: {kind: job, container: [nope\n"),
        "/self.yaml": (200, b""),
    }

    def do_GET(self) -> None:
        status, body = self.routes.get(self.path, (404, b"not found"))
        if self.path == "/self.yaml":
            body = f"kind: operation\nurlRef: http://127.0.0.1:{self.server.server_port}/self.yaml\n".encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/yaml")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture(scope="module")
def server() -> Iterator[str]:
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_port}"
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join(timeout=5)


def _dag(op: str) -> str:
    return f"kind: component\nname: p\nrun:\n  kind: dag\n  operations:\n    - {op}\n"


def test_url_ref(server: str) -> None:
    result = compile_text(_dag(f"{{name: a, urlRef: {server}/step.yaml, params: {{n: 3}}}}"))
    assert result.valid, result.errors
    comp = result.op.component.dag.ops[0].component
    assert comp.name == "remote-step" and comp.source == f"urlRef {server}/step.yaml"


def test_url_ref_404(server: str) -> None:
    result = compile_text(_dag(f"{{name: a, urlRef: {server}/missing.yaml}}"))
    assert not result.valid
    err = result.errors[0]
    assert err.location == "run.operations[0].urlRef"
    assert "could not be resolved: HTTP 404" in err.message
    assert (err.line, err.column) == (6, 17)


def test_url_ref_with_yaml_error_is_reported_in_the_remote_document(server: str) -> None:
    result = compile_text(_dag(f"{{name: a, urlRef: {server}/bad.yaml}}"))
    assert not result.valid
    remote = [e for e in result.errors if e.path == f"{server}/bad.yaml"]
    assert remote and "invalid YAML" in remote[0].message and remote[0].line == 3


def test_url_ref_cycle(server: str) -> None:
    result = compile_text(f"kind: operation\nurlRef: {server}/self.yaml\n")
    assert any("Polyaxonfile reference cycle" in e.message for e in result.errors)


def test_url_ref_unreachable_is_fast_and_clean() -> None:
    result = compile_text(_dag("{name: a, urlRef: 'http://127.0.0.1:9/x.yaml'}"), url_timeout=2)
    assert not result.valid and "could not be resolved" in result.errors[0].message


def test_url_ref_scheme() -> None:
    result = compile_text(_dag("{name: a, urlRef: 'ftp://x/y.yaml'}"))
    assert "only http:// and https:// URLs are supported" in result.errors[0].message


def test_hub_candidates() -> None:
    hub = Path("/hub")
    assert hub_candidates("name", "/hub") == [hub / "name.yaml", hub / "name.yml", hub / "name/latest.yaml",
                                              hub / "name/latest.yml"]
    assert hub_candidates("name:v1", "/hub") == [hub / "name/v1.yaml", hub / "name/v1.yml"]
    assert hub_candidates("acme/name:v1", "/hub") == [hub / "acme/name/v1.yaml", hub / "acme/name/v1.yml"]
    with pytest.raises(RefError, match="not of the form"):
        hub_candidates("a b", "/hub")


def test_hub_resolution_names_what_it_tried() -> None:
    assert locate_hub("echo", str(HUB)).name.endswith("echo.yaml")
    assert locate_hub("trainer", str(HUB)).name.endswith("trainer/latest.yaml")
    assert locate_hub("trainer:v2", str(HUB)).name.endswith("trainer/v2.yml")
    assert locate_hub("acme/cleaner", str(HUB)).name.endswith("acme/cleaner.yaml")
    with pytest.raises(RefError) as info:
        locate_hub("trainer:v3", str(HUB))
    assert "trainer/v3.yaml" in str(info.value) and "trainer/v3.yml" in str(info.value)


def test_path_ref_relative_to_the_referring_file(tmp_path: Path) -> None:
    (tmp_path / "lib").mkdir()
    (tmp_path / "lib" / "inner.yaml").write_text(
        "kind: component\nname: inner\nrun: {kind: job, container: {image: busybox}}\n")
    (tmp_path / "lib" / "outer.yaml").write_text("kind: operation\npathRef: inner.yaml\n")
    result = compile_text(_dag("{name: a, pathRef: lib/outer.yaml}"), base_dir=tmp_path)
    assert result.valid, result.errors
    assert result.op.component.dag.ops[0].component.name == "inner"


def test_nested_dag_from_a_referenced_file(tmp_path: Path) -> None:
    (tmp_path / "sub.yaml").write_text(
        "kind: component\nname: sub\nops:\n  - {name: x, pathRef: leaf.yaml}\n")
    (tmp_path / "leaf.yaml").write_text("kind: component\nrun: {kind: job, container: {image: busybox}}\n")
    result = compile_text(_dag("{name: a, pathRef: sub.yaml}"), base_dir=tmp_path)
    assert result.valid, result.errors
    inner = result.op.component.dag.ops[0].component
    assert inner.kind == "dag" and [o.name for o in inner.dag.ops] == ["x"]

"""Artifacts through `flowd run` with real processes: files a job writes under $FLOWD_ARTIFACTS
are kept in the store, consumers get their paths, cache hits reuse them, and `flowd gc` removes
them only when nothing refers to them."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def flowd(*args: str | Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "flowd", *map(str, args)], capture_output=True, text=True,
                          timeout=60, cwd=ROOT, env={**os.environ, **(env or {})})


PIPELINE = """
version: 1.1
kind: component
name: lineage
run:
  kind: dag
  operations:
    - name: produce
      cache: {disable: false}
      component:
        outputs: [{name: data, type: path}]
        run:
          kind: job
          container:
            image: busybox
            command: [sh, -c, 'mkdir -p "$FLOWD_ARTIFACTS/data" && echo 42 > "$FLOWD_ARTIFACTS/data/part-0"']
    - name: consume
      params:
        data: {ref: ops.produce, value: outputs.data}
        base: {ref: ops.produce, value: artifacts.base}
      component:
        inputs: [{name: data, type: path}, {name: base, type: path}]
        run:
          kind: job
          container:
            image: busybox
            command: [sh, -c, 'test "$(cat {{ data }}/part-0)" = 42 && test -d "{{ base }}/data"']
"""


def run(tmp_path: Path, *extra: str) -> dict:
    file = tmp_path / "p.yaml"
    file.write_text(textwrap.dedent(PIPELINE))
    proc = flowd("run", file, "--state-dir", tmp_path / "state", "-o", "json", *extra)
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)


def test_outputs_resolve_to_store_paths_and_cache_hits_reuse_them(tmp_path):
    first = run(tmp_path)
    data = Path(first["ops"]["produce"]["outputs"]["data"])
    assert data == tmp_path / "state" / "artifacts" / first["run_id"] / "produce" / "data"
    assert (data / "part-0").read_text() == "42\n"
    assert first["ops"]["produce"]["artifacts"] == {"produced": [str(data)], "consumed": []}
    second = run(tmp_path)
    assert second["ops"]["produce"].get("cache_hit") is True
    # the hit points at the first run's files: nothing copied, nothing stored for the second run
    assert second["ops"]["produce"]["outputs"]["data"] == str(data)
    assert not (tmp_path / "state" / "artifacts" / second["run_id"]).exists()
    assert {c["run_id"] for c in second["ops"]["consume"]["artifacts"]["consumed"]} == {first["run_id"]}


def test_a_store_the_user_names(tmp_path):
    report = run(tmp_path, "--artifacts-store", tmp_path / "elsewhere")
    assert report["ops"]["produce"]["outputs"]["data"].startswith(str(tmp_path / "elsewhere") + "/")


def test_an_unsupported_store_url_is_a_usage_error(tmp_path):
    file = tmp_path / "p.yaml"
    file.write_text(textwrap.dedent(PIPELINE))
    proc = flowd("run", file, "--state-dir", tmp_path / "s", "--artifacts-store", "gs://b/x")
    assert proc.returncode == 2 and "unsupported scheme 'gs'" in proc.stderr


def test_artifacts_ref_without_a_store_context_is_no_longer_a_run_time_error(tmp_path):
    """The issue's case: `ref: ops.X, value: artifacts.base` passed check and failed at run time."""
    report = run(tmp_path)
    assert report["status"] == "succeeded"


def gc(tmp_path: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    return flowd("gc", "--state-dir", tmp_path / "state", "--keep-days", "0", *extra)


def test_gc_keeps_artifacts_a_kept_run_or_a_cache_entry_refers_to(tmp_path):
    first = run(tmp_path)
    second = run(tmp_path)  # a cache hit on the first run's artifacts
    artifacts = tmp_path / "state" / "artifacts"
    proc = gc(tmp_path, "--keep-last", "1")
    assert proc.returncode == 0 and f"removed {first['run_id']}" in proc.stdout, proc.stderr
    # the first run's state is gone, its artifacts stay: the second run and the cache name them
    assert not (tmp_path / "state" / "runs" / first["run_id"]).exists()
    assert (artifacts / first["run_id"] / "produce" / "data" / "part-0").is_file()
    assert f"kept artifacts of {first['run_id']}" in proc.stderr
    # once nothing refers to them (no cache entry, the referring run removed) they go
    for entry in (tmp_path / "state" / "cache").glob("*.json"):
        entry.unlink()
    proc = gc(tmp_path, "--keep-last", "0", "--dry-run")
    assert f"would remove artifacts of {first['run_id']}" in proc.stdout
    assert (artifacts / first["run_id"]).is_dir()
    proc = gc(tmp_path, "--keep-last", "0")
    assert f"removed {second['run_id']}" in proc.stdout and f"removed artifacts of {first['run_id']}" in proc.stdout
    assert not (artifacts / first["run_id"]).exists()

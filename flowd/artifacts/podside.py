"""The two processes of the flowd image that move a pod's artifacts (docs/artifacts.md, "On
Kubernetes"). Both read the store from ``FLOWD_ARTIFACTS_*`` and credentials from ``AWS_*`` in
their environment (a connection's secret), never from argv.

``python -m flowd.artifacts.podside upload`` — the ``flowd-artifacts`` sidecar. The main
container runs through a POSIX-sh wrapper (:data:`WRAPPER`) that writes the op's exit code to
``$FLOWD_ARTIFACTS_EXIT`` in the shared emptyDir. The sidecar waits for that file; on 0 it
replaces ``$FLOWD_ARTIFACTS_PREFIX`` in the store with ``$FLOWD_ARTIFACTS`` and writes
``{"location", "present"}`` (the top-level names it uploaded) to its termination message, which
the executor reads with the main container's outputs (flowd.k8s.status). A failed upload exits 1
with the reason in the termination message: the pod fails, so a success is never reported
before the files are in the store. On a non-zero code it uploads nothing and exits 0.

``python -m flowd.artifacts.podside fetch`` — the ``flowd-inputs`` init container of a consumer.
``$FLOWD_FETCH`` is a JSON list of ``[key, local path]``: each key (relative to the store) is
downloaded as a folder, or, when no folder has that name, as the file of that name.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import sys
import time
from collections.abc import Mapping
from pathlib import Path

from flowd.artifacts.config import StoreConfig, open_store
from flowd.artifacts.store import ArtifactStoreError, Store

__all__ = ["WRAPPER", "fetch", "main", "upload"]

TERMINATION_LOG = "/dev/termination-log"

# The main container's command becomes: /bin/sh -c WRAPPER flowd-wrap <command> <args...>.
# It runs the op as a child, passes SIGTERM/SIGINT on (sh as pid 1 would otherwise ignore them),
# and records the op's exit code for the uploader before exiting with it. The code is written to
# a temporary name and renamed, so the uploader never reads half a number.
WRAPPER = (
    'f="${FLOWD_ARTIFACTS_EXIT:?}"; mkdir -p "${FLOWD_ARTIFACTS:?}"; "$@" & p=$!; '
    "trap 'kill -TERM $p 2>/dev/null' TERM INT; "
    'wait $p; c=$?; while kill -0 $p 2>/dev/null; do wait $p; c=$?; done; '
    'echo $c > "$f.tmp" && mv "$f.tmp" "$f"; exit $c'
)


def _credentials(env: Mapping[str, str]) -> dict[str, str] | None:
    keys = {"access_key_id": "AWS_ACCESS_KEY_ID", "secret_access_key": "AWS_SECRET_ACCESS_KEY",
            "session_token": "AWS_SESSION_TOKEN"}
    return {k: env[v] for k, v in keys.items() if env.get(v)} or None


def _store(env: Mapping[str, str]) -> Store:
    config = StoreConfig.from_env(env)
    if not config.url:
        raise ArtifactStoreError("FLOWD_ARTIFACTS_STORE is not set in this container")
    return open_store(config, default_folder=Path("artifacts"), credentials=_credentials(env))


def _finish(message: str, code: int, env: Mapping[str, str]) -> int:
    try:
        Path(env.get("FLOWD_TERMINATION_LOG", TERMINATION_LOG)).write_text(message[-4000:])
    except OSError:
        pass
    if code:
        print(f"flowd: {message}", file=sys.stderr, flush=True)
    return code


def upload(env: Mapping[str, str], *, poll: float = 0.2) -> int:
    exit_file = Path(env["FLOWD_ARTIFACTS_EXIT"])
    staging = Path(env["FLOWD_ARTIFACTS"])
    prefix = env["FLOWD_ARTIFACTS_PREFIX"]
    while not exit_file.exists():
        time.sleep(poll)
    code = exit_file.read_text().strip()
    if code != "0":
        return _finish(json.dumps({"skipped": f"the op exited with code {code}"}), 0, env)
    try:
        store = _store(env)
        present = sorted(p.name for p in staging.iterdir()) if staging.is_dir() else []

        async def run() -> None:
            # a retried op's latest attempt replaces what an earlier one stored
            await store.delete(prefix)
            if present:
                await store.put(prefix, staging)

        asyncio.run(run())
    except (ArtifactStoreError, OSError) as exc:
        return _finish(f"cannot upload the artifacts: {exc}", 1, env)
    return _finish(json.dumps({"location": store.location(prefix), "present": present}), 0, env)


def fetch(env: Mapping[str, str]) -> int:
    try:
        pairs = [(str(k), str(d)) for k, d in json.loads(env.get("FLOWD_FETCH") or "[]")]
    except (ValueError, TypeError):
        return _finish("FLOWD_FETCH must be a JSON list of [key, path] pairs", 2, env)
    try:
        store = _store(env)

        async def one(key: str, dest: Path) -> None:
            if await store.list(key):
                await store.get(key, dest)
                return
            parent, _, name = key.rpartition("/")
            if not parent or not any(o.key == key for o in await store.list(parent)):
                raise ArtifactStoreError(f"no artifacts at {store.location(key)}")
            # a file: fetched with its folder (the store has no single-object read), then kept alone
            tmp = dest.parent / f".{dest.name}.fetch"
            try:
                await store.get(parent, tmp)
                dest.parent.mkdir(parents=True, exist_ok=True)
                os.replace(tmp / name, dest)
            finally:
                shutil.rmtree(tmp, ignore_errors=True)

        async def run() -> None:
            for key, dest in pairs:
                await one(key, Path(dest))

        asyncio.run(run())
    except (ArtifactStoreError, OSError) as exc:
        return _finish(f"cannot download the consumed artifacts: {exc}", 1, env)
    return _finish(json.dumps({"fetched": [k for k, _ in pairs]}), 0, env)


def main(argv: list[str]) -> int:
    if argv == ["upload"]:
        return upload(os.environ)
    if argv == ["fetch"]:
        return fetch(os.environ)
    print("usage: python -m flowd.artifacts.podside upload|fetch", file=sys.stderr)
    return 2


if __name__ == "__main__":
    from flowd.procexit import exit_process

    exit_process(main(sys.argv[1:]))

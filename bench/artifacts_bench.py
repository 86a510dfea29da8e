"""Benchmark: artifact upload/download throughput through flowd's store versus the client
library's own copy loop, on this machine.

    .venv/bin/python bench/artifacts_bench.py [--big-mib 256] [--small 200] [--small-kib 256] [--repeat 3]

Two shapes of artifacts: one big file (a checkpoint) and many small files (a dataset shard
folder). For each, MiB/s of:

* S3 (a real gofakes3 server on loopback, started here from ~/.cache/flowd-testbin; run
  ``python -m tests.infra build s3`` first): ``S3Store.put``/``get`` (flowd.artifacts.s3, what
  the executor uses) versus obstore's ``put_async``/``get_async`` called directly, one object after
  the other (the library's own loop, no flowd code in between);
* the pod's code paths on the same server and files: ``python -m flowd.artifacts.podside
  upload`` (the ``flowd-artifacts`` sidecar: delete the op's prefix, upload, write its report)
  and ``... fetch`` (the ``flowd-inputs`` init container) as the processes a pod runs, wall time
  from spawn to exit. Their fixed cost (interpreter start, imports, one empty upload / one tiny
  fetch) is measured apart and printed, and the rate is given with and without it;
* the folder store: ``FolderStore.put``/``get`` (copy) and ``adopt`` (rename: what ``flowd run``
  does with a finished attempt) versus ``shutil.copyfile`` in a loop.

Best of ``--repeat`` runs; figures are printed, never asserted. The S3 server shares the
machine's 2 cores with the client, so S3 figures are bounded by the server, not the network.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import obstore

from flowd.artifacts import FolderStore, StoreConfig, open_store
from tests.infra.s3 import S3Server

MiB = 1024 * 1024


def make(root: Path, big_mib: int, small: int, small_kib: int) -> dict[str, Path]:
    big = root / "big"
    big.mkdir(parents=True)
    with (big / "checkpoint.bin").open("wb") as fh:
        for _ in range(big_mib):
            fh.write(os.urandom(MiB))
    many = root / "many"
    many.mkdir()
    for i in range(small):
        (many / f"part-{i:05d}").write_bytes(os.urandom(small_kib * 1024))
    return {"big": big, "many": many}


def size(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


async def best(fn, repeat: int) -> float:
    times = []
    for _ in range(repeat):
        t = time.perf_counter()
        await fn()
        times.append(time.perf_counter() - t)
    return min(times)


def rate(nbytes: int, seconds: float) -> str:
    return f"{nbytes / MiB / seconds:8.1f} MiB/s ({seconds:.3f} s)"


def podside(mode: str, env: dict[str, str], tmp: Path) -> None:
    """One run of the pod process ``mode`` (upload|fetch), as its container runs it."""
    log = tmp / "podside.msg"
    proc = subprocess.run([sys.executable, "-m", "flowd.artifacts.podside", mode], capture_output=True, text=True,
                          env={**env, "FLOWD_TERMINATION_LOG": str(log)}, timeout=600)
    if proc.returncode != 0:
        raise RuntimeError(f"podside {mode} exited {proc.returncode}: {log.read_text() if log.exists() else proc.stderr}")


def pod_env(server: S3Server, tmp: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("FLOWD_")}
    env.update(server.env())
    env.update({"FLOWD_ARTIFACTS_STORE": f"s3://{server.bucket}/bench", "FLOWD_ARTIFACTS_ENDPOINT": server.endpoint,
                **extra})
    return env


async def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--big-mib", type=int, default=256)
    ap.add_argument("--small", type=int, default=200)
    ap.add_argument("--small-kib", type=int, default=256)
    ap.add_argument("--repeat", type=int, default=3)
    a = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="flowd-artifacts-bench-"))
    server = None
    try:
        shapes = make(tmp / "src", a.big_mib, a.small, a.small_kib)
        server = await S3Server(run_dir=tmp / "s3").start()
        os.environ.update(server.env())
        s3 = open_store(StoreConfig(url=f"s3://{server.bucket}/bench", endpoint=server.endpoint), default_folder=tmp)
        raw = s3._store  # the obstore client flowd's S3Store wraps
        folder = FolderStore(tmp / "folder")
        print(f"shapes: big = 1 file of {a.big_mib} MiB; many = {a.small} files of {a.small_kib} KiB; best of {a.repeat}")
        print(f"s3 server: gofakes3 on {server.endpoint}")
        # the pod processes' fixed cost: an op that wrote nothing, and a fetch of one 1-byte object
        exit_file = tmp / "exit-code"
        exit_file.write_text("0\n")
        (tmp / "empty").mkdir()
        (tmp / "tiny").mkdir()
        (tmp / "tiny" / "x").write_bytes(b"x")
        await s3.put("pod/tiny", tmp / "tiny")

        async def fixed_upload():
            await asyncio.to_thread(podside, "upload", pod_env(
                server, tmp, FLOWD_ARTIFACTS=str(tmp / "empty"), FLOWD_ARTIFACTS_EXIT=str(exit_file),
                FLOWD_ARTIFACTS_PREFIX="pod/empty"), tmp)

        async def fixed_fetch():
            shutil.rmtree(tmp / "tiny-out", ignore_errors=True)
            await asyncio.to_thread(podside, "fetch", pod_env(
                server, tmp, FLOWD_FETCH=json.dumps([["pod/tiny", str(tmp / "tiny-out")]])), tmp)

        fixed_up, fixed_fetch_s = await best(fixed_upload, a.repeat), await best(fixed_fetch, a.repeat)
        fixed_fetch = fixed_fetch_s
        print(f"pod processes' fixed cost: upload (nothing to store) {fixed_up * 1000:.0f} ms, "
              f"fetch (1 byte) {fixed_fetch * 1000:.0f} ms")
        for name, src in shapes.items():
            n = size(src)
            files = sorted(p for p in src.iterdir())

            async def lib_put(files=files, name=name):
                for p in files:
                    await obstore.put_async(raw, f"lib/{name}/{p.name}", p)

            async def lib_get(files=files, name=name, out=tmp / "lib-out" / name):
                out.mkdir(parents=True, exist_ok=True)
                for p in files:
                    r = await obstore.get_async(raw, f"lib/{name}/{p.name}")
                    with (out / p.name).open("wb") as fh:
                        async for chunk in r.stream():
                            fh.write(chunk)

            async def store_put(src=src, name=name):
                await s3.put(f"flowd/{name}", src)

            async def store_get(name=name, out=tmp / "store-out" / name):
                await s3.get(f"flowd/{name}", out)

            async def folder_put(src=src, name=name):
                await folder.put(f"put/{name}", src)

            async def folder_get(name=name, out=tmp / "folder-out" / name):
                await folder.get(f"put/{name}", out)

            async def copy_loop(files=files, name=name, out=tmp / "copy-out" / name):
                out.mkdir(parents=True, exist_ok=True)
                for p in files:
                    shutil.copyfile(p, out / p.name)

            staged = tmp / "staged"

            async def adopt(src=src, name=name, staged=staged):
                shutil.rmtree(staged, ignore_errors=True)
                shutil.copytree(src, staged)  # setup, not timed below
                t = time.perf_counter()
                folder.adopt(f"adopt/{name}", staged)
                adopt.seconds = min(getattr(adopt, "seconds", 1e9), time.perf_counter() - t)

            print(f"\n[{name}] {n / MiB:.0f} MiB")
            print(f"  s3 upload    flowd S3Store.put      {rate(n, await best(store_put, a.repeat))}")
            print(f"  s3 upload    obstore put_async loop {rate(n, await best(lib_put, a.repeat))}")
            print(f"  s3 download  flowd S3Store.get      {rate(n, await best(store_get, a.repeat))}")
            print(f"  s3 download  obstore get_async loop {rate(n, await best(lib_get, a.repeat))}")
            print(f"  folder put   FolderStore.put (copy) {rate(n, await best(folder_put, a.repeat))}")
            print(f"  folder get   FolderStore.get (copy) {rate(n, await best(folder_get, a.repeat))}")
            print(f"  folder copy  shutil.copyfile loop   {rate(n, await best(copy_loop, a.repeat))}")
            async def pod_upload(src=src, name=name):
                await asyncio.to_thread(podside, "upload", pod_env(
                    server, tmp, FLOWD_ARTIFACTS=str(src), FLOWD_ARTIFACTS_EXIT=str(exit_file),
                    FLOWD_ARTIFACTS_PREFIX=f"pod/{name}"), tmp)

            async def pod_fetch(name=name, out=tmp / "pod-out" / name):
                shutil.rmtree(out, ignore_errors=True)
                await asyncio.to_thread(podside, "fetch", pod_env(
                    server, tmp, FLOWD_FETCH=json.dumps([[f"pod/{name}", str(out)]])), tmp)

            up, down = await best(pod_upload, a.repeat), await best(pod_fetch, a.repeat)
            print(f"  pod upload   podside upload process {rate(n, up)}; without its fixed cost "
                  f"{rate(n, max(1e-6, up - fixed_up))}")
            print(f"  pod fetch    podside fetch process  {rate(n, down)}; without its fixed cost "
                  f"{rate(n, max(1e-6, down - fixed_fetch))}")
            await best(adopt, a.repeat)
            print(f"  folder adopt FolderStore.adopt (rename, what flowd run does) {adopt.seconds * 1000:.2f} ms")
    finally:
        if server is not None:
            server.stop()
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    asyncio.run(main())

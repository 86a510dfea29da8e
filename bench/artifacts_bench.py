"""Benchmark: artifact upload/download throughput through flowd's store versus the client
library's own copy loop, on this machine.

    .venv/bin/python bench/artifacts_bench.py [--big-mib 256] [--small 200] [--small-kib 256] [--repeat 3]

Two shapes of artifacts: one big file (a checkpoint) and many small files (a dataset shard
folder). For each, MiB/s of:

* S3 (a real gofakes3 server on loopback, started here from ~/.cache/flowd-testbin; run
  ``python -m tests.infra build s3`` first): ``S3Store.put``/``get`` (flowd.artifacts.s3, what
  the executor uses) versus obstore's ``put_async``/``get_async`` called directly, one object after
  the other (the library's own loop, no flowd code in between);
* the folder store: ``FolderStore.put``/``get`` (copy) and ``adopt`` (rename: what ``flowd run``
  does with a finished attempt) versus ``shutil.copyfile`` in a loop.

Best of ``--repeat`` runs; figures are printed, never asserted. The S3 server shares the
machine's 2 cores with the client, so S3 figures are bounded by the server, not the network.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
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
            await best(adopt, a.repeat)
            print(f"  folder adopt FolderStore.adopt (rename, what flowd run does) {adopt.seconds * 1000:.2f} ms")
    finally:
        if server is not None:
            server.stop()
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    asyncio.run(main())

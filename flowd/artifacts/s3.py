"""The artifact store of the cluster: S3-compatible object storage, through obstore.

Why obstore (``obstore`` on PyPI, the Python binding of the Rust ``object_store`` crate that
Apache Arrow maintains): one wheel with no Python dependencies (boto3 brings botocore's ~100 MB
of service models, minio-py brings urllib3 + argon2 + pycryptodome), native asyncio
(``put_async``/``get_async`` stream without a thread per transfer, where boto3 and minio-py are
blocking and need a thread pool), multipart uploads and retries built in, and typed stubs.

Configuration (:class:`flowd.artifacts.config.StoreConfig`): the bucket and an optional key
prefix come from the store URL (``s3://bucket/prefix``), the endpoint and region from settings;
credentials are read by obstore from the environment (``AWS_ACCESS_KEY_ID``,
``AWS_SECRET_ACCESS_KEY``, ``AWS_SESSION_TOKEN``, web identity, container credentials...) or
handed in by the caller from a connection's secret: never from the command line.
"""

from __future__ import annotations

import asyncio
import builtins
import os
from pathlib import Path
from typing import Any

import obstore
from obstore.exceptions import BaseError as ObstoreError
from obstore.store import S3Store as _ObS3Store

from flowd.artifacts.folder import _tree
from flowd.artifacts.store import ArtifactStoreError, ObjectInfo, Transfer, check_prefix

__all__ = ["S3Store"]

# parallel object transfers of one put/get (each large object is itself a parallel multipart upload)
DEFAULT_CONCURRENCY = 8
CHUNK = 8 * 1024 * 1024


class S3Store:
    def __init__(self, bucket: str, prefix: str = "", *, endpoint: str = "", region: str = "",
                 credentials: dict[str, str] | None = None, concurrency: int = DEFAULT_CONCURRENCY) -> None:
        self.bucket = bucket
        self.prefix = check_prefix(prefix)
        self.endpoint = endpoint
        self.concurrency = max(1, concurrency)
        config: dict[str, Any] = {}
        if endpoint:
            config["endpoint"] = endpoint
            # path-style requests: what S3-compatible servers on a plain host:port understand
            config["virtual_hosted_style_request"] = False
        if region:
            config["region"] = region
        for name in ("access_key_id", "secret_access_key", "session_token"):
            if credentials and credentials.get(name):
                config[name] = credentials[name]
        client: dict[str, Any] = {"allow_http": endpoint.startswith("http://")} if endpoint else {}
        try:
            self._store = _ObS3Store(bucket, prefix=self.prefix or None, config=config, client_options=client)  # type: ignore[arg-type]
        except (ObstoreError, ValueError) as exc:
            raise ArtifactStoreError(f"cannot configure the S3 store s3://{bucket}/{self.prefix}: {exc}") from exc

    def __repr__(self) -> str:
        return f"S3Store({self.location('')!r}, endpoint={self.endpoint!r})"

    def location(self, prefix: str) -> str:
        key = "/".join(p for p in (self.prefix, check_prefix(prefix)) if p)
        return f"s3://{self.bucket}/{key}" if key else f"s3://{self.bucket}"

    def local_path(self, prefix: str) -> Path | None:
        return None

    def _fail(self, what: str, prefix: str, exc: Exception) -> ArtifactStoreError:
        return ArtifactStoreError(f"cannot {what} {self.location(prefix)}: {type(exc).__name__}: {exc}")

    # ------------------------------------------------------------------------------------ put

    async def put(self, prefix: str, source: Path) -> Transfer:
        base = check_prefix(prefix)
        files = await asyncio.to_thread(_tree, Path(source))
        gate = asyncio.Semaphore(self.concurrency)

        async def one(path: Path, rel: str) -> int:
            key = f"{base}/{rel}" if base else rel
            async with gate:
                try:
                    await obstore.put_async(self._store, key, path, chunk_size=CHUNK)
                except (ObstoreError, OSError) as exc:
                    raise self._fail("upload to", key, exc) from exc
            return path.stat().st_size

        sizes = await asyncio.gather(*(one(p, r) for p, r in files))
        return Transfer(files=len(files), bytes=sum(sizes))

    # ------------------------------------------------------------------------------------ get

    async def _download(self, key: str, dst: Path) -> int:
        dst.parent.mkdir(parents=True, exist_ok=True)
        tmp = dst.with_name(f".{dst.name}.{os.getpid()}.part")
        total = 0
        try:
            result = await obstore.get_async(self._store, key)
            with tmp.open("wb") as fh:
                async for chunk in result.stream(min_chunk_size=CHUNK):
                    total += len(chunk)
                    await asyncio.to_thread(fh.write, chunk)
            os.replace(tmp, dst)
        except (ObstoreError, OSError) as exc:
            tmp.unlink(missing_ok=True)
            raise self._fail("download", key, exc) from exc
        return total

    async def get(self, prefix: str, dest: Path) -> Transfer:
        base = check_prefix(prefix)
        objects = await self.list(base)
        if not objects:
            raise ArtifactStoreError(f"no artifacts at {self.location(base)}")
        gate = asyncio.Semaphore(self.concurrency)

        async def one(info: ObjectInfo) -> int:
            rel = info.key[len(base) + 1:] if base else info.key
            async with gate:
                return await self._download(info.key, Path(dest) / rel)

        sizes = await asyncio.gather(*(one(o) for o in objects))
        return Transfer(files=len(objects), bytes=sum(sizes))

    # --------------------------------------------------------------------------- list, delete

    async def list(self, prefix: str) -> list[ObjectInfo]:
        base = check_prefix(prefix)
        out: list[ObjectInfo] = []
        try:
            async for chunk in obstore.list(self._store, prefix=f"{base}/" if base else None, chunk_size=1000):
                for meta in chunk:
                    out.append(ObjectInfo(key=meta["path"], size=meta["size"], modified=meta["last_modified"].timestamp()))
        except ObstoreError as exc:
            raise self._fail("list", base, exc) from exc
        return sorted(out, key=lambda o: o.key)

    async def children(self, prefix: str) -> builtins.list[str]:
        base = check_prefix(prefix)
        try:
            result = await obstore.list_with_delimiter_async(self._store, prefix=f"{base}/" if base else None)
        except ObstoreError as exc:
            raise self._fail("list", base, exc) from exc
        names = {p.rstrip("/").rpartition("/")[2] for p in result["common_prefixes"]}
        names.update(m["path"].rpartition("/")[2] for m in result["objects"])
        return sorted(names)

    async def delete(self, prefix: str) -> int:
        base = check_prefix(prefix)
        if not base:
            raise ArtifactStoreError(f"refusing to delete the whole store {self.location('')}")
        keys = [o.key for o in await self.list(base)]
        try:
            for i in range(0, len(keys), 1000):
                await obstore.delete_async(self._store, keys[i:i + 1000])
        except ObstoreError as exc:
            raise self._fail("delete", base, exc) from exc
        return len(keys)

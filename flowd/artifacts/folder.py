"""The artifact store of ``flowd run``: a directory (``<state dir>/artifacts`` unless the user
names another). A prefix is a subdirectory; readers on this machine use it in place."""

from __future__ import annotations

import asyncio
import builtins
import os
import shutil
from pathlib import Path

from flowd.artifacts.store import ArtifactStoreError, ObjectInfo, Transfer, check_prefix

__all__ = ["FolderStore"]


def _copy_file(src: Path, dst: Path) -> int:
    """Copy into a temporary name beside ``dst`` and rename it over ``dst``: a reader (or a
    crash) never leaves a half-written file under its final name."""
    dst.parent.mkdir(parents=True, exist_ok=True)
    tmp = dst.with_name(f".{dst.name}.{os.getpid()}.part")
    shutil.copyfile(src, tmp)
    os.replace(tmp, dst)
    return dst.stat().st_size


def _tree(source: Path) -> list[tuple[Path, str]]:
    """(file, key relative to ``source``) of every regular file under ``source`` (symlinks
    followed only when they point inside it), or the file itself."""
    if source.is_file():
        return [(source, source.name)]
    if not source.is_dir():
        raise ArtifactStoreError(f"{source}: no such file or directory")
    root = source.resolve()
    out: list[tuple[Path, str]] = []
    for dirpath, _dirs, files in os.walk(source):
        for name in files:
            path = Path(dirpath) / name
            if path.is_symlink() and not path.resolve().is_relative_to(root):
                raise ArtifactStoreError(f"{path}: a symbolic link out of the artifacts directory ({path.resolve()})")
            if path.is_file():
                out.append((path, path.relative_to(source).as_posix()))
    return sorted(out, key=lambda item: item[1])


class FolderStore:
    def __init__(self, root: Path) -> None:
        self.root = Path(root).absolute()

    def __repr__(self) -> str:
        return f"FolderStore({str(self.root)!r})"

    def _dir(self, prefix: str) -> Path:
        clean = check_prefix(prefix)
        return self.root / clean if clean else self.root

    def location(self, prefix: str) -> str:
        return str(self._dir(prefix))

    def local_path(self, prefix: str) -> Path | None:
        return self._dir(prefix)

    # ------------------------------------------------------------------------------------ put

    def _put(self, prefix: str, source: Path) -> Transfer:
        base = self._dir(prefix)
        files = total = 0
        try:
            for path, rel in _tree(source):
                total += _copy_file(path, base / rel)
                files += 1
        except OSError as exc:
            raise ArtifactStoreError(f"cannot store {source} at {base}: {exc}") from exc
        return Transfer(files=files, bytes=total)

    async def put(self, prefix: str, source: Path) -> Transfer:
        return await asyncio.to_thread(self._put, prefix, Path(source))

    def adopt(self, prefix: str, source: Path) -> Transfer:
        """Move the directory ``source`` to ``prefix`` by renaming it (same filesystem: no copy),
        replacing what was there; falls back to a copy across filesystems. What ``flowd run``
        does with a finished attempt's ``$FLOWD_ARTIFACTS``."""
        base = self._dir(prefix)
        files = [(p, r) for p, r in _tree(source)]
        moved = Transfer(files=len(files), bytes=sum(p.stat().st_size for p, _ in files))
        try:
            base.parent.mkdir(parents=True, exist_ok=True)
            if base.exists():
                trash = base.with_name(f".{base.name}.{os.getpid()}.old")
                os.replace(base, trash)
                shutil.rmtree(trash, ignore_errors=True)
            os.replace(source, base)
        except OSError:
            return self._put(prefix, source)  # EXDEV: another filesystem
        return moved

    # ------------------------------------------------------------------------------------ get

    def _get(self, prefix: str, dest: Path) -> Transfer:
        base = self._dir(prefix)
        if base.is_file():
            return Transfer(files=1, bytes=_copy_file(base, Path(dest) / base.name))
        if not base.is_dir() or not any(base.iterdir()):
            raise ArtifactStoreError(f"no artifacts at {base}")
        files = total = 0
        try:
            for path, rel in _tree(base):
                total += _copy_file(path, Path(dest) / rel)
                files += 1
        except OSError as exc:
            raise ArtifactStoreError(f"cannot copy {base} to {dest}: {exc}") from exc
        return Transfer(files=files, bytes=total)

    async def get(self, prefix: str, dest: Path) -> Transfer:
        return await asyncio.to_thread(self._get, prefix, Path(dest))

    # --------------------------------------------------------------------------- list, delete

    def _list(self, prefix: str) -> list[ObjectInfo]:
        base = self._dir(prefix)
        if not base.is_dir():
            return []
        out = []
        for path, rel in _tree(base):
            if path.name.startswith(".") and path.name.endswith((".part", ".old")):
                continue  # a copy in progress
            st = path.stat()
            key = f"{check_prefix(prefix)}/{rel}" if check_prefix(prefix) else rel
            out.append(ObjectInfo(key=key, size=st.st_size, modified=st.st_mtime))
        return out

    async def list(self, prefix: str) -> list[ObjectInfo]:
        return await asyncio.to_thread(self._list, prefix)

    async def children(self, prefix: str) -> builtins.list[str]:
        base = self._dir(prefix)
        try:
            return sorted(p.name for p in base.iterdir() if not p.name.startswith("."))
        except OSError:
            return []

    def _delete(self, prefix: str) -> int:
        base = self._dir(prefix)
        if base == self.root:
            raise ArtifactStoreError(f"refusing to delete the whole store {self.root}")
        if base.is_file():
            base.unlink()
            return 1
        if not base.is_dir():
            return 0
        count = sum(1 for _ in _tree(base))
        shutil.rmtree(base, ignore_errors=True)
        return count

    async def delete(self, prefix: str) -> int:
        return await asyncio.to_thread(self._delete, prefix)

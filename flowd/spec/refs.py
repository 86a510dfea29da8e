"""Finding and reading referenced components: ``pathRef``, ``urlRef``, ``hubRef`` (POLYFLOW §1.5).

The only module of the spec layer that does I/O (reading files, one HTTP GET per URL). Each
reference is read once per compilation and cached; the compiler detects reference cycles with
its own stack of the keys returned here.

Hub layout (a directory given by ``--hub DIR`` or ``FLOWD_HUB``):

* ``name``             -> ``DIR/name.yaml``, else ``DIR/name/latest.yaml``
* ``name:tag``         -> ``DIR/name/tag.yaml``
* ``owner/name[:tag]`` -> the same under ``DIR/owner/`` (the owner is a sub-directory)

``.yml`` is tried after ``.yaml`` at each step. An unresolvable reference names every path it tried.
"""

from __future__ import annotations

import os
import re
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

from flowd.spec.limits import Limits, over

__all__ = [
    "DEFAULT_MAX_BYTES",
    "URL_MAX_BYTES",
    "URL_TIMEOUT",
    "Located",
    "RefError",
    "UrlFetcher",
    "fetch_url",
    "locate_hub",
    "locate_path",
]

# `flowd check`/`flowd run` fetch urlRefs on the user's own machine: bounded, but not filtered
# (the daemon fetches only what its allowlist names: flowd.daemon.urlrefs)
URL_TIMEOUT = 10.0
DEFAULT_MAX_BYTES = Limits().max_spec_bytes
URL_MAX_BYTES = DEFAULT_MAX_BYTES  # a fetched document is a spec: the same limit
_HUB_NAME = re.compile(r"^(?:(?P<owner>[-\w.]+)/)?(?P<name>[-\w.]+)(?::(?P<tag>[-\w.]+))?$")


class RefError(Exception):
    """A reference that cannot be read; the message says what was tried."""


UrlFetcher = Callable[[str], "Located"]


class Located:
    """A referenced document: its display name, cache key, text and the directory for pathRefs."""

    __slots__ = ("base_dir", "key", "name", "text")

    def __init__(self, name: str, key: str, text: str, base_dir: str | None) -> None:
        self.name = name
        self.key = key
        self.text = text
        self.base_dir = base_dir


def display(path: Path) -> str:
    """A short name for messages: relative to the working directory when that is shorter."""
    absolute = os.path.normpath(os.path.abspath(path))
    try:
        relative = os.path.relpath(absolute)
    except ValueError:  # another drive (Windows)
        return absolute
    return relative if len(relative) < len(absolute) else absolute


def _read(path: Path, max_bytes: int) -> str:
    try:
        size = path.stat().st_size
        if size > max_bytes:  # refused before it is read (docs/limits.md)
            raise RefError(f"`{path}`: " + str(over("the file is", size, "bytes", setting="max_spec_bytes",
                                                     limit=max_bytes)))
        return path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise RefError(f"`{path}` is not UTF-8 text: {exc}") from None
    except OSError as exc:
        raise RefError(f"cannot read `{path}`: {exc.strerror or exc}") from None


def locate_path(ref: str, base_dir: str | None, *, max_bytes: int = DEFAULT_MAX_BYTES) -> Located:
    """``pathRef``: relative to the directory of the referring file."""
    if base_dir is None:
        raise RefError(f"pathRef `{ref}` cannot be resolved: the referring document has no directory "
                       "(it came from a URL or was given as text)")
    path = Path(ref) if os.path.isabs(ref) else Path(base_dir) / ref
    if not path.is_file():
        tried = [path]
        if not path.suffix:
            for ext in (".yaml", ".yml"):
                alt = path.with_name(path.name + ext)
                tried.append(alt)
                if alt.is_file():
                    path = alt
                    break
            else:
                raise RefError(f"pathRef `{ref}` could not be resolved: tried {', '.join(f'`{p}`' for p in tried)}")
        else:
            raise RefError(f"pathRef `{ref}` could not be resolved: `{path}` does not exist")
    resolved = path.resolve()
    return Located(display(path), f"path:{resolved}", _read(path, max_bytes), str(resolved.parent))


def hub_candidates(ref: str, hub: str) -> list[Path]:
    m = _HUB_NAME.match(ref.strip())
    if not m:
        raise RefError(f"hubRef `{ref}` is not of the form `[owner/]name[:tag]`")
    root = Path(hub)
    if m.group("owner"):
        root = root / m.group("owner")
    name, tag = m.group("name"), m.group("tag")
    if tag:
        return [root / name / f"{tag}.yaml", root / name / f"{tag}.yml"]
    return [root / f"{name}.yaml", root / f"{name}.yml", root / name / "latest.yaml", root / name / "latest.yml"]


def locate_hub(ref: str, hub: str | None, *, max_bytes: int = DEFAULT_MAX_BYTES) -> Located:
    """``hubRef`` against a hub directory."""
    if not hub:
        raise RefError(
            f"hubRef `{ref}` could not be resolved: no component hub is configured (use `--hub DIR` or set FLOWD_HUB)"
        )
    candidates = hub_candidates(ref, hub)
    for path in candidates:
        if path.is_file():
            resolved = path.resolve()
            return Located(display(path), f"path:{resolved}", _read(path, max_bytes), str(resolved.parent))
    tried = ", ".join(f"`{p}`" for p in candidates)
    raise RefError(f"hubRef `{ref}` could not be resolved in the hub `{hub}`: tried {tried}")


def fetch_url(url: str, *, timeout: float = URL_TIMEOUT, max_bytes: int = DEFAULT_MAX_BYTES) -> Located:
    """``urlRef``: one HTTP(S) GET, each network step bounded by ``timeout`` and the whole read
    by ``2 * timeout``, the body by ``max_bytes``."""
    import time

    if not re.match(r"^https?://", url):
        raise RefError(f"urlRef `{url}` could not be resolved: only http:// and https:// URLs are supported")
    request = urllib.request.Request(url, headers={"Accept": "application/yaml, application/json, text/plain, */*"})  # noqa: S310
    limit = f"larger than {max_bytes} bytes (the limit)"
    deadline = time.monotonic() + 2 * timeout
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:  # noqa: S310
            length = response.headers.get("Content-Length")
            if length and length.isdigit() and int(length) > max_bytes:
                raise RefError(f"urlRef `{url}`: the document is {limit}")
            chunks: list[bytes] = []
            size = 0
            while size <= max_bytes:
                if time.monotonic() > deadline:
                    raise TimeoutError("the download took too long")
                chunk: Any = response.read(min(65536, max_bytes + 1 - size))
                if not chunk:
                    break
                chunks.append(chunk)
                size += len(chunk)
            body = b"".join(chunks)
    except urllib.error.HTTPError as exc:
        raise RefError(f"urlRef `{url}` could not be resolved: HTTP {exc.code} {exc.reason}") from None
    except urllib.error.URLError as exc:
        raise RefError(f"urlRef `{url}` could not be resolved: {exc.reason}") from None
    except (TimeoutError, OSError) as exc:
        raise RefError(f"urlRef `{url}` could not be resolved: {exc or 'timed out'} (timeout {timeout:g} s)") from None
    if len(body) > max_bytes:
        raise RefError(f"urlRef `{url}`: " + str(over("the document is", len(body), "bytes", setting="max_spec_bytes",
                                                       limit=max_bytes, at_least=True)))
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        raise RefError(f"urlRef `{url}`: the document is not UTF-8 text") from None
    return Located(url, f"url:{url}", text, None)

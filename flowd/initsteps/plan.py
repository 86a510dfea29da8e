"""An op's ``init`` section -> the steps that prepare its files: pure, no I/O.

Both executors run the same plan: the Kubernetes executor as init containers of the flowd image
(flowd.k8s.pod), ``flowd run`` as steps of a small wrapper process before the op's own process
(flowd.runtime.initwrap). Paths are Polyaxon's (docs/kubernetes.md "Init steps"):

* every built-in step writes under a *context volume*: ``/plx-context/artifacts`` unless the step
  names a ``path`` (then that path is the volume);
* ``git``: the repository is cloned into ``<volume>/<name>``; ``name`` is the connection's name,
  or for an inline ``git.url`` the URL's last part without ``.git``;
* ``file``: ``<volume>/<filename>`` (``filename`` default ``file``), then ``chmod`` if given;
* ``dockerfile``: ``<volume>/<filename>`` (default ``Dockerfile``), the file Polyaxon generates;
* ``artifacts`` / ``paths``: from the default artifact store into ``<volume>/<path>``
  (``/plx-context/artifacts/<path>``), from a store or volume connection into
  ``<volume>/<path>`` where the volume defaults to ``/plx-context/artifacts/<connection>``;
  ``[from, to]`` pairs copy ``from`` to ``to``; neither files nor dirs: the whole store;
* ``connection`` alone: a git connection is cloned, a store/volume connection copied whole, any
  other kind needs a ``container`` (run with the connection's env and secrets);
* ``container``: the user's container, as is.

Errors a cluster could never accept (an unknown connection, a git step without a URL, two
handlers in one step) raise :class:`InitError` naming the step.
"""

from __future__ import annotations

import hashlib
import posixpath
from collections.abc import Mapping
from typing import Any

import msgspec

from flowd.connections import GIT_KINDS, STORE_KINDS, Connection

__all__ = [
    "ARTIFACTS_MOUNT",
    "CONTEXT_ROOT",
    "DEFAULT_STORE",
    "InitError",
    "InitPlan",
    "Step",
    "dockerfile_text",
    "plan_init",
    "volume_name",
]

CONTEXT_ROOT = "/plx-context"
ARTIFACTS_MOUNT = f"{CONTEXT_ROOT}/artifacts"
# the artifact store an ``artifacts`` step without a connection reads
DEFAULT_STORE = ""
# bounds: a step list and a file's content are user input
MAX_STEPS = 32
MAX_FILE_BYTES = 1 << 20

_HANDLERS = ("git", "file", "dockerfile", "artifacts", "paths", "tensorboard", "lineageRef", "modelRef", "artifactRef")
_UNSUPPORTED = {
    "tensorboard": "tensorboard init steps need Polyaxon's tensorboard plugin",
    "lineageRef": "lineage references need Polyaxon's API",
    "modelRef": "model registry references need Polyaxon's API",
    "artifactRef": "artifact version references need Polyaxon's API",
}


class InitError(Exception):
    """The init section cannot be run (a user error: the attempt fails with CannotStart)."""


class Step(msgspec.Struct, kw_only=True, omit_defaults=True, frozen=True):
    """One init step. Paths are container paths; ``flowd run`` maps them into the attempt's
    directory (flowd.runtime.initwrap)."""

    index: int
    kind: str  # git | file | dockerfile | artifacts | container
    label: str  # how messages name it: init[0] git 'repo'
    name: str  # the init container's name on Kubernetes
    mount: str | None = None  # the context volume it writes under
    dest: str | None = None  # what it creates (git: the clone; file/dockerfile: the file; artifacts: the base)
    connection: str | None = None
    # git
    url: str | None = None
    revision: str | None = None
    flags: list[str] = []
    # file and dockerfile: the content written to dest
    content: str | None = None
    chmod: str | None = None
    # artifacts: ``store`` is DEFAULT_STORE or a connection kind; ``source`` the root it copies
    # from (a container path for volume connections, a key prefix for stores); ``copies`` are
    # [from, to, "file"|"dir"] relative to source / dest
    store: str | None = None
    source: str | None = None
    endpoint: str | None = None  # an s3 connection's schema.endpoint (an S3-compatible server)
    copies: list[list[str]] = []
    # container: the user's container body (or the patch of a built-in step's container)
    container: dict[str, Any] | None = None


class InitPlan(msgspec.Struct, kw_only=True, frozen=True):
    steps: list[Step] = []
    # context volumes (container paths) the steps write and the main container mounts
    mounts: list[str] = []
    # connections whose env/secrets the steps need, by step index
    connections: dict[int, str] = {}


def volume_name(mount: str) -> str:
    """The emptyDir volume of a context mount (Polyaxon's name for the default one)."""
    if mount == ARTIFACTS_MOUNT:
        return "artifacts-context"
    return "connections-context-" + hashlib.sha256(mount.encode()).hexdigest()[:16]


def _slug(text: str) -> str:
    out = "".join(c if c.isalnum() else "-" for c in text.lower()).strip("-")
    return "-".join(p for p in out.split("-") if p)[:30] or "step"


def _str_list(value: Any, where: str) -> list[str]:
    if value is None:
        return []
    if isinstance(value, str):
        return [value]
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise InitError(f"{where} must be a list of strings")
    return list(value)


def _pairs(value: Any, where: str) -> list[tuple[str, str]]:
    out = []
    for item in value or []:
        if isinstance(item, str):
            out.append((item, item))
        elif isinstance(item, list | tuple) and len(item) == 2 and all(isinstance(v, str) for v in item):
            out.append((item[0], item[1]))
        else:
            raise InitError(f"{where}: expected a path or a [from, to] pair, got {item!r}")
    for src, dst in out:
        for p in (src, dst):
            if ".." in posixpath.normpath("/" + p).split("/") or ".." in p.split("/"):
                raise InitError(f"{where}: {p!r} leaves its folder ('..' is not allowed)")
    return out


def _rel(p: str) -> str:
    return posixpath.normpath("/" + p).lstrip("/")


def plan_init(init: Any, catalog: Mapping[str, Connection]) -> InitPlan:
    """The steps of ``run.init`` (a list of Polyaxon ``V1Init`` mappings, camelCase keys)."""
    if init is None:
        return InitPlan()
    if not isinstance(init, list):
        raise InitError("run.init must be a list of init steps")
    if len(init) > MAX_STEPS:
        raise InitError(f"run.init has {len(init)} steps; at most {MAX_STEPS}")
    steps: list[Step] = []
    connections: dict[int, str] = {}
    for i, raw in enumerate(init):
        if not isinstance(raw, dict):
            raise InitError(f"run.init[{i}] must be a mapping")
        body = {k: v for k, v in raw.items() if v is not None}
        step = _step(i, body, catalog)
        steps.append(step)
        if step.connection is not None:
            connections[i] = step.connection
    mounts: list[str] = []
    for s in steps:
        if s.mount is not None and s.mount not in mounts:
            mounts.append(s.mount)
    return InitPlan(steps=steps, mounts=mounts, connections=connections)


def _lookup(i: int, name: Any, catalog: Mapping[str, Connection]) -> Connection:
    conn = catalog.get(str(name))
    if conn is None:
        known = ", ".join(sorted(catalog)) or "none configured"
        raise InitError(f"run.init[{i}]: unknown connection {name!r} (known: {known})")
    return conn


def _step(i: int, body: dict[str, Any], catalog: Mapping[str, Connection]) -> Step:
    handlers = [h for h in _HANDLERS if h in body]
    handlers = ["artifacts" if h == "paths" else h for h in handlers]
    handlers = list(dict.fromkeys(handlers))
    for h in handlers:
        if h in _UNSUPPORTED:
            raise InitError(f"run.init[{i}].{h}: not supported by flowd ({_UNSUPPORTED[h]})")
    if len(handlers) > 1:
        raise InitError(f"run.init[{i}]: one handler per step, got {', '.join(handlers)}")
    conn_name = body.get("connection")
    conn = _lookup(i, conn_name, catalog) if conn_name is not None else None
    path = body.get("path")
    if path is not None and (not isinstance(path, str) or not path.startswith("/")):
        raise InitError(f"run.init[{i}].path must be an absolute path, got {path!r}")
    container = body.get("container")
    if container is not None and not isinstance(container, dict):
        raise InitError(f"run.init[{i}].container must be a container mapping")
    kind = handlers[0] if handlers else None
    if kind is None and conn is not None:
        if conn.kind in GIT_KINDS:
            kind = "git"
        elif conn.kind in STORE_KINDS:
            kind = "artifacts"
        else:
            if not container or not container.get("image"):
                raise InitError(f"run.init[{i}]: connection {conn_name!r} of kind {conn.kind!r} has no built-in init "
                                "step; give the step a `container` (it runs with the connection's env and secrets)")
            return Step(index=i, kind="container", label=f"init[{i}] container {container.get('name') or conn_name!r}",
                        name=str(container.get("name") or f"init-{i}-{_slug(str(conn_name))}"),
                        mount=path or ARTIFACTS_MOUNT, connection=str(conn_name), container=container)
    if kind is None:
        if not container or not container.get("image"):
            raise InitError(f"run.init[{i}]: a step needs a handler (git, file, dockerfile, artifacts, connection) "
                            "or a container with an image")
        return Step(index=i, kind="container", label=f"init[{i}] container {container.get('name') or f'init-{i}'!r}",
                    name=str(container.get("name") or f"init-{i}"), container=container)
    patch = {k: v for k, v in (container or {}).items() if k != "name"} or None
    if kind == "git":
        return _git(i, body.get("git") or {}, conn, path, patch)
    if kind == "file":
        return _file(i, body["file"], path, patch)
    if kind == "dockerfile":
        return _dockerfile(i, body["dockerfile"], path, patch)
    return _artifacts(i, body.get("artifacts") or {}, body.get("paths"), conn, path, patch)


def _git(i: int, git: Any, conn: Connection | None, path: str | None, patch: dict[str, Any] | None) -> Step:
    if not isinstance(git, dict):
        raise InitError(f"run.init[{i}].git must be a mapping (url, revision, flags)")
    schema = dict(conn.schema or {}) if conn is not None else {}
    if conn is not None and conn.kind not in GIT_KINDS:
        raise InitError(f"run.init[{i}]: connection {conn.name!r} is of kind {conn.kind!r}, not git")
    url = git.get("url") or schema.get("url")
    if not isinstance(url, str) or not url:
        raise InitError(f"run.init[{i}].git: a url is required (in the step or its connection's schema.url)")
    revision = git.get("revision") or schema.get("revision")
    flags = _str_list(git.get("flags") if git.get("flags") is not None else schema.get("flags"), f"run.init[{i}].git.flags")
    if conn is not None:
        name = conn.name
    else:
        name = url.rstrip("/").split("/")[-1].split(".")[0]
    if not name or name in (".", ".."):
        raise InitError(f"run.init[{i}].git: cannot name a folder after url {url!r}; use a connection")
    mount = path or ARTIFACTS_MOUNT
    return Step(index=i, kind="git", label=f"init[{i}] git {name!r}", name=f"init-{i}-git-{_slug(name)}",
                mount=mount, dest=f"{mount}/{name}", connection=conn.name if conn is not None else None,
                url=url, revision=str(revision) if revision else None, flags=flags, container=patch)


def _file(i: int, spec: Any, path: str | None, patch: dict[str, Any] | None) -> Step:
    if not isinstance(spec, dict) or not isinstance(spec.get("content"), str):
        raise InitError(f"run.init[{i}].file needs `content` (a string)")
    content = spec["content"]
    if len(content.encode()) > MAX_FILE_BYTES:
        raise InitError(f"run.init[{i}].file.content is {len(content.encode())} bytes; at most {MAX_FILE_BYTES}")
    filename = spec.get("filename") or spec.get("name") or "file"
    _check_filename(i, "file", filename)
    chmod = spec.get("chmod")
    if chmod is not None and not isinstance(chmod, str | int):
        raise InitError(f"run.init[{i}].file.chmod must be a chmod mode string like '+x' or '755'")
    mount = path or ARTIFACTS_MOUNT
    return Step(index=i, kind="file", label=f"init[{i}] file {filename!r}", name=f"init-{i}-file",
                mount=mount, dest=f"{mount}/{filename}", content=content,
                chmod=str(chmod) if chmod is not None else None, container=patch)


def _check_filename(i: int, what: str, filename: Any) -> None:
    if not isinstance(filename, str) or not filename or "/" in filename or filename in (".", ".."):
        raise InitError(f"run.init[{i}].{what}.filename must be a plain file name, got {filename!r}")


def _dockerfile(i: int, spec: Any, path: str | None, patch: dict[str, Any] | None) -> Step:
    if not isinstance(spec, dict) or not isinstance(spec.get("image"), str) or not spec["image"]:
        raise InitError(f"run.init[{i}].dockerfile needs `image`")
    filename = spec.get("filename") or "Dockerfile"
    _check_filename(i, "dockerfile", filename)
    mount = path or ARTIFACTS_MOUNT
    return Step(index=i, kind="dockerfile", label=f"init[{i}] dockerfile {filename!r}", name=f"init-{i}-dockerfile",
                mount=mount, dest=f"{mount}/{filename}", content=dockerfile_text(spec), container=patch)


def _artifacts(i: int, spec: Any, paths: Any, conn: Connection | None, path: str | None,
               patch: dict[str, Any] | None) -> Step:
    if not isinstance(spec, dict):
        raise InitError(f"run.init[{i}].artifacts must be a mapping (files, dirs)")
    where = f"run.init[{i}].artifacts"
    files = _pairs(spec.get("files"), f"{where}.files")
    dirs = _pairs(spec.get("dirs"), f"{where}.dirs")
    extra = _pairs(paths, f"run.init[{i}].paths")
    if not files and not dirs and not extra:
        dirs = [("", "")]  # nothing named: the whole store
    copies = ([[_rel(a), _rel(b), "file"] for a, b in files] + [[_rel(a), _rel(b), "dir"] for a, b in dirs]
              + [[_rel(a), _rel(b), "any"] for a, b in extra])
    if conn is None:
        mount = path or ARTIFACTS_MOUNT
        return Step(index=i, kind="artifacts", label=f"init[{i}] artifacts (default store)", name=f"init-{i}-artifacts",
                    mount=mount, dest=mount, store=DEFAULT_STORE, source="", copies=copies, container=patch)
    if conn.kind not in STORE_KINDS:
        raise InitError(f"run.init[{i}]: connection {conn.name!r} is of kind {conn.kind!r}; artifacts come from "
                        f"{', '.join(sorted(STORE_KINDS))} connections or the default store")
    schema = conn.schema or {}
    if conn.kind in ("host_path", "volume_claim"):
        source = schema.get("mountPath")
        if not source:
            raise InitError(f"run.init[{i}]: connection {conn.name!r} needs schema.mountPath")
    else:
        source = str(schema.get("bucket") or "")
        if conn.kind != "s3":
            raise InitError(f"run.init[{i}]: connection {conn.name!r}: flowd reads artifacts from s3, host_path and "
                            f"volume_claim connections, not {conn.kind}")
        if not source.startswith("s3://"):
            source = f"s3://{source}"
    mount = path or f"{ARTIFACTS_MOUNT}/{conn.name}"
    return Step(index=i, kind="artifacts", label=f"init[{i}] artifacts from {conn.name!r}",
                name=f"init-{i}-artifacts-{_slug(conn.name)}", mount=path or ARTIFACTS_MOUNT, dest=mount,
                connection=conn.name, store=conn.kind, source=str(source), copies=copies, container=patch,
                endpoint=str(schema["endpoint"]) if schema.get("endpoint") else None)


# ------------------------------------------------------------------------------ dockerfile


def dockerfile_text(spec: Mapping[str, Any]) -> str:
    """The Dockerfile Polyaxon's ``dockerfile`` init step generates from a V1DockerfileType
    (image, env, path, copy, run, postRunCopy, langEnv, uid/gid/username, workdir, workdirPath,
    shell), same instructions in the same order."""
    workdir = spec.get("workdir") or "/code"
    shell = spec.get("shell", "/bin/bash")
    lines = [f"FROM {spec['image']}", ""]
    lang = spec.get("langEnv") or spec.get("lang_env")
    if lang:
        lines += [f"ENV LC_ALL {lang}", f"ENV LANG {lang}", f"ENV LANGUAGE {lang}"]
    if shell:
        lines += [f"ENV SHELL {shell}"]
    for p in spec.get("path") or []:
        lines.append(f'ENV PATH="${{PATH}}:{p}"')
    env = spec.get("env") or {}
    items = env.items() if isinstance(env, dict) else [tuple(e) for e in env]
    for k, v in items:
        lines.append(f"ENV {k} {v}")
    lines += [f"WORKDIR {workdir}", ""]

    def copies(value: Any) -> list[str]:
        return [f"COPY {c} {workdir}" if isinstance(c, str) else f"COPY {c[0]} {c[1]}" for c in value or []]

    lines += copies(spec.get("copy"))
    lines += [f"RUN {r}" for r in spec.get("run") or []]
    lines += copies(spec.get("postRunCopy") or spec.get("post_run_copy"))
    uid, gid = spec.get("uid"), spec.get("gid")
    if uid and gid:
        user = spec.get("username") or "polyaxon"
        lines += ["# Drop root user and use Polyaxon user",
                  f"RUN groupadd -g {gid} -r polyaxon && useradd -r -m -g polyaxon -u {uid} {user}"]
    workdir_path = spec.get("workdirPath") or spec.get("workdir_path")
    if workdir_path:
        lines.append(f"COPY {workdir_path} {workdir}")
    return "\n".join(lines) + "\n"

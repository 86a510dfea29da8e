"""Carrying out one init step (git clone, a file written, a Dockerfile, artifacts copied, a local
container's command): the I/O half of flowd.initsteps. The same code runs in the flowd image's
init containers on Kubernetes and in ``flowd run``'s wrapper process, with a :class:`PathMap`
that is the identity in a pod and points into the attempt's directory locally.

Git credentials come from the step's environment (the connection's secret, as in Polyaxon):
``POLYAXON_GIT_CREDENTIALS=user:password`` (or a token as password). They reach git through a
credential helper that reads them from git's environment, never through the URL or argv, so they
show neither in ``ps`` nor in the clone's ``.git/config`` nor in logs.
"""

from __future__ import annotations

import os
import shlex
import shutil
import subprocess
import sys
from collections.abc import Callable, Mapping
from pathlib import Path

from flowd.initsteps.paths import PathMap
from flowd.initsteps.plan import Step

__all__ = ["GIT_CREDENTIALS_ENV", "StepFailed", "run_step"]

GIT_CREDENTIALS_ENV = "POLYAXON_GIT_CREDENTIALS"
# reads the credentials from git's environment when a server asks (argv holds no secret)
_HELPER = '!f() { test "$1" = get && printf "username=%s\\npassword=%s\\n" "$FLOWD_GIT_USERNAME" "$FLOWD_GIT_PASSWORD"; }; f'
# the tail of a failing command kept in the message
_TAIL = 600

# reads ``copies`` of an artifacts step from a store: (step, local destination) -> None
StoreReader = Callable[[Step, str], None]


class StepFailed(Exception):
    """The step ran and failed; the message says why (it names no secret)."""


def _tail(text: str) -> str:
    text = " ".join(text.strip().split())
    return text if len(text) <= _TAIL else "…" + text[-_TAIL:]


def run_step(step: Step, *, paths: PathMap, env: Mapping[str, str], cwd: str | None = None,
             store: StoreReader | None = None) -> None:
    """Run one step; raise StepFailed with a message for its failure."""
    if step.kind == "git":
        _git(step, paths, env)
    elif step.kind in ("file", "dockerfile"):
        _file(step, paths)
    elif step.kind == "artifacts":
        _artifacts(step, paths, env, store)
    elif step.kind == "container":
        _container(step, paths, env, cwd)
    else:
        raise StepFailed(f"unknown init step kind {step.kind!r}")


def _run(argv: list[str], env: Mapping[str, str], cwd: str | None = None, *, capture: bool = True,
         what: str | None = None) -> None:
    """Run a command; its output goes to this process's (the attempt's log, the pod's log). With
    ``capture`` the tail of its stderr also goes into the failure message (git's are short)."""
    try:
        r = subprocess.run(argv, env=dict(env), cwd=cwd, stdin=subprocess.DEVNULL,
                           stderr=subprocess.PIPE if capture else None, text=True)
    except OSError as exc:
        raise StepFailed(f"cannot run {argv[0]!r}: {exc.strerror or exc}") from None
    if r.stderr:
        print(r.stderr, end="", file=sys.stderr, flush=True)
    if r.returncode != 0:
        what = f"`{what or argv[0]}` exited with code {r.returncode}"
        raise StepFailed(f"{what}: {_tail(r.stderr)}" if r.stderr and r.stderr.strip() else what)


def _git(step: Step, paths: PathMap, env: Mapping[str, str]) -> None:
    assert step.url is not None and step.dest is not None
    dest = paths.local(step.dest)
    if os.path.exists(dest) and os.listdir(dest):
        shutil.rmtree(dest)  # a retried attempt, or a pod's init container run again: clone afresh
    Path(dest).parent.mkdir(parents=True, exist_ok=True)
    git_env = {k: v for k, v in env.items() if k != GIT_CREDENTIALS_ENV}
    git_env["GIT_TERMINAL_PROMPT"] = "0"  # fail, never wait for a password on a terminal
    creds = env.get(GIT_CREDENTIALS_ENV)
    if creds:
        user, _, password = creds.partition(":")
        count = int(git_env.get("GIT_CONFIG_COUNT", "0") or 0)
        git_env.update({"GIT_CONFIG_COUNT": str(count + 1), f"GIT_CONFIG_KEY_{count}": "credential.helper",
                        f"GIT_CONFIG_VALUE_{count}": _HELPER, "FLOWD_GIT_USERNAME": user,
                        "FLOWD_GIT_PASSWORD": password})
    flags = [part for flag in step.flags for part in shlex.split(flag)]
    _run(["git", "clone", *flags, "--", step.url, dest], git_env, what=f"git clone {step.url}")
    if step.revision:
        _run(["git", "-C", dest, "-c", "advice.detachedHead=false", "checkout", step.revision, "--"], git_env,
             what=f"git checkout {step.revision}")


def _file(step: Step, paths: PathMap) -> None:
    assert step.dest is not None and step.content is not None
    dest = Path(paths.local(step.dest))
    dest.parent.mkdir(parents=True, exist_ok=True)
    dest.unlink(missing_ok=True)
    dest.write_text(step.content)
    if step.chmod:
        mode = step.chmod
        if mode.isdigit():
            dest.chmod(int(mode, 8))
        else:
            _run(["chmod", mode, str(dest)], os.environ, what=f"chmod {mode}")


def _artifacts(step: Step, paths: PathMap, env: Mapping[str, str], store: StoreReader | None) -> None:
    assert step.dest is not None
    dest = paths.local(step.dest)
    os.makedirs(dest, exist_ok=True)
    if step.store in ("host_path", "volume_claim"):
        assert step.source is not None
        root = paths.local(step.source)
        for src, dst, what in step.copies:
            _copy(os.path.join(root, src) if src else root, os.path.join(dest, dst) if dst else dest, what,
                  f"{src or '/'} in connection {step.connection!r}")
        return
    if store is not None:
        store(step, dest)
    else:
        read_store(step, dest, env)


def _copy(src: str, dst: str, what: str, label: str) -> None:
    if what in ("dir", "any") and os.path.isdir(src):
        shutil.copytree(src, dst, dirs_exist_ok=True)
    elif what in ("file", "any") and os.path.isfile(src):
        os.makedirs(os.path.dirname(dst) or ".", exist_ok=True)
        shutil.copy2(src, dst)
    else:
        raise StepFailed(f"{'a folder' if what == 'dir' else 'a file' if what == 'file' else 'a path'} {label} "
                         "does not exist")


def _container(step: Step, paths: PathMap, env: Mapping[str, str], cwd: str | None) -> None:
    body = step.container or {}
    command = body.get("command")
    args = body.get("args")
    argv = (shlex.split(command) if isinstance(command, str) else [str(c) for c in command or []])
    argv += [args] if isinstance(args, str) else [str(a) for a in args or []]
    if not command:
        raise StepFailed("the container has no command: flowd runs command + args on this machine")
    step_env = dict(env)
    for item in body.get("env") or []:
        if isinstance(item, dict) and "name" in item and item.get("value") is not None:
            step_env[str(item["name"])] = paths.rewrite(str(item["value"]))
    workdir = body.get("workingDir")
    if isinstance(workdir, str):
        workdir = paths.local(workdir)
    _run([paths.rewrite(a) for a in argv], step_env, cwd=workdir if workdir and os.path.isdir(workdir) else cwd,
         capture=False)


def read_store(step: Step, dest: str, env: Mapping[str, str]) -> None:
    """An artifacts step from the default artifact store (``FLOWD_ARTIFACTS_*`` of the step's
    environment, else the folder ``$FLOWD_ARTIFACTS_FOLDER``) or from an ``s3`` connection
    (``schema.bucket``, ``schema.endpoint``; credentials from the connection's secret as
    ``AWS_*`` env). A ``files`` entry is fetched through its folder (on S3 the folder's other
    objects are fetched too, then dropped)."""
    import asyncio
    import tempfile

    from flowd.artifacts import ArtifactStoreError, StoreConfig, open_store

    if step.store == "s3":
        config = StoreConfig(url=step.source or "", endpoint=step.endpoint or env.get("FLOWD_ARTIFACTS_ENDPOINT", ""),
                             region=env.get("AWS_REGION", ""))
        label = f"connection {step.connection!r}"
    elif step.store == "":
        config = StoreConfig.from_env(env)
        label = "the artifact store"
    else:
        raise StepFailed(f"connection kind {step.store!r} is not readable by flowd (s3, host_path, volume_claim)")
    try:
        keys = {"access_key_id": "AWS_ACCESS_KEY_ID", "secret_access_key": "AWS_SECRET_ACCESS_KEY",
                "session_token": "AWS_SESSION_TOKEN"}
        credentials = {k: env[v] for k, v in keys.items() if env.get(v)} or None
        store = open_store(config, default_folder=Path(env.get("FLOWD_ARTIFACTS_FOLDER") or "artifacts"),
                           credentials=credentials)
    except ArtifactStoreError as exc:
        raise StepFailed(str(exc)) from None

    async def fetch() -> None:
        for src, dst, what in step.copies:
            target = Path(dest) / dst if dst else Path(dest)
            if what == "file":
                parent, _, name = src.rpartition("/")
                with tempfile.TemporaryDirectory(dir=dest) as tmp:
                    await store.get(parent, Path(tmp))
                    got = Path(tmp) / name
                    if not got.is_file():
                        raise StepFailed(f"a file {src} in {label} does not exist")
                    target.parent.mkdir(parents=True, exist_ok=True)
                    os.replace(got, target)
            else:
                await store.get(src, target)

    try:
        asyncio.run(fetch())
    except ArtifactStoreError as exc:
        raise StepFailed(f"{label}: {exc}") from None

"""Pod bodies converted once per distinct op body and stamped per attempt.

:func:`flowd.k8s.pod.build_pod` does the whole conversion for every attempt: container and env
merging, init steps, connections, the pod policy checks and hardening. The attempts of a
fan-out of identical ops, of matrix children whose params reach the pod as ``toEnv`` variables,
and the retries of one op differ only in *who* they are: the pod name, the identity labels and
annotations, ``FLOWD_RUN_ID``/``FLOWD_OP_PATH``/``FLOWD_ATTEMPT`` and the values (not the
names) of ``StartOp.env``. :class:`PodTemplates` builds the first pod of a body with
``build_pod`` itself and keeps it encoded; every later attempt with the same body gets a fresh
decoded copy with exactly those parts rewritten (about a fifth of the CPU of a conversion).

What keys a template: the kind, the namespace, the rendered runtime body, the names of
``StartOp.env`` in order, and the termination (deadline, TTL annotation). Bodies that depend on
the attempt in other ways are never templated: pods with the deployment's artifact store (the
upload prefix names the run and op), and any pod in which the identity env is not where the
merge rules put it (a ``StartOp.env`` name that is also a ``FLOWD_*`` name). Conversion errors
are not cached: each attempt of a bad body fails on its own, with its own message.
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Any

import msgspec

from flowd.engine import StartOp
from flowd.k8s import artifacts
from flowd.k8s import naming as N
from flowd.k8s.config import Settings
from flowd.k8s.pod import IDENTITY_ENV, build_pod, env_str, identity_annotations, identity_labels, user_metadata

__all__ = ["PodTemplates"]

_encode = msgspec.json.Encoder().encode
_decode = msgspec.json.Decoder().decode


class _Template(msgspec.Struct, frozen=True):
    body: bytes  # the first pod built from this body, encoded (a copy is one decode)
    labels: dict[str, str]  # the op's own labels and annotations (identity ones go over them)
    annotations: dict[str, str]
    main: int  # index of the main container in spec.containers
    main_name: str
    identity_env: tuple[int, int, int]  # indexes of IDENTITY_ENV in the main container's env
    env: tuple[tuple[str, int], ...]  # StartOp.env names -> their index in that env


class PodTemplates:
    """``build(cmd)`` returns what ``build_pod(cmd, settings)`` returns, from a template when
    an earlier attempt had the same body. At most ``size`` templates are kept (least recently
    used go first)."""

    def __init__(self, settings: Settings, *, size: int = 512) -> None:
        self.settings = settings
        self.size = size
        try:
            # the upload sidecar's prefix is the run and op: every such pod is built in full
            self.enabled = artifacts.store_base(settings) is None
        except artifacts.ArtifactsError:
            self.enabled = False  # build_pod reports the bad setting on every attempt
        self._cache: OrderedDict[bytes, _Template | None] = OrderedDict()
        self.stats = {"hits": 0, "builds": 0}

    def build(self, cmd: StartOp) -> dict[str, Any]:
        if not self.enabled or cmd.kind not in ("job", "service"):
            return build_pod(cmd, self.settings)
        try:
            key = _encode((cmd.kind, cmd.namespace, cmd.run, list(cmd.env), cmd.termination))
        except (TypeError, msgspec.EncodeError):
            return build_pod(cmd, self.settings)  # not plain JSON (never from the wire); no template
        template = self._cache.get(key)
        if template is not None:
            self._cache.move_to_end(key)
            self.stats["hits"] += 1
            return self._stamp(template, cmd)
        pod = build_pod(cmd, self.settings)  # a ConversionError leaves nothing cached
        self.stats["builds"] += 1
        if key not in self._cache:  # None: this body cannot be templated; no second look
            self._cache[key] = _template(pod, cmd)
            if len(self._cache) > self.size:
                self._cache.popitem(last=False)
        return pod

    def _stamp(self, t: _Template, cmd: StartOp) -> dict[str, Any]:
        pod: dict[str, Any] = _decode(t.body)
        name = N.pod_name(cmd.run_id, cmd.path, cmd.attempt)
        meta = pod["metadata"]
        meta["name"] = name
        meta["labels"] = {**t.labels, **identity_labels(cmd, self.settings, name)}
        meta["annotations"] = {**t.annotations, **identity_annotations(cmd, self.settings, main=t.main_name)}
        env = pod["spec"]["containers"][t.main]["env"]
        run_id, path, attempt = t.identity_env
        env[run_id]["value"] = cmd.run_id
        env[path]["value"] = cmd.path
        env[attempt]["value"] = str(cmd.attempt)
        for (_, i), value in zip(t.env, cmd.env.values(), strict=True):
            env[i]["value"] = env_str(value)
        return pod


def _template(pod: dict[str, Any], cmd: StartOp) -> _Template | None:
    """The template of a freshly built pod, or None if its attempt-dependent parts are not
    exactly where the merge rules put them."""
    main_name = pod["metadata"]["annotations"].get(N.A_MAIN)
    containers = pod["spec"]["containers"]
    main = next((i for i, c in enumerate(containers) if c.get("name") == main_name), None)
    if main is None:
        return None
    env = containers[main].get("env") or []
    where = {str(e.get("name")): i for i, e in enumerate(env)}
    identity = dict(zip(IDENTITY_ENV, (cmd.run_id, cmd.path, str(cmd.attempt)), strict=True))
    if any(n in identity for n in cmd.env):
        return None
    # each stamped value must be the one the pod carries (no later merge overrode it)
    wanted = {**identity, **{n: env_str(v) for n, v in cmd.env.items()}}
    if any(n not in where or set(env[where[n]]) != {"name", "value"} or env[where[n]]["value"] != v
           for n, v in wanted.items()):
        return None
    labels, annotations = user_metadata(cmd.run or {})
    return _Template(
        body=_encode(pod), labels=labels, annotations=annotations, main=main, main_name=str(main_name),
        identity_env=(where["FLOWD_RUN_ID"], where["FLOWD_OP_PATH"], where["FLOWD_ATTEMPT"]),
        env=tuple((n, where[n]) for n in cmd.env),
    )


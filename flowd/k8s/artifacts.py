"""Artifacts of a pod (docs/artifacts.md "On Kubernetes"): pure additions to a PodSpec.

When the deployment names an S3 artifact store (``artifacts_store`` in the executor settings):

* **upload** (jobs whose main container has a ``command``): an emptyDir ``flowd-artifacts`` at
  ``/flowd/artifacts`` is shared by the main container and a ``flowd-artifacts`` sidecar (flowd
  image). The main container gets ``FLOWD_ARTIFACTS=/flowd/artifacts/out`` and runs through
  :data:`flowd.artifacts.podside.WRAPPER` (``/bin/sh -c``), which records its exit code; the
  sidecar uploads the folder to ``<run id>/<op path>`` after a 0 and exits. A failed upload
  fails the pod, so success is only reported once the files are in the store. The op's
  ``$FLOWD_OUTPUTS`` is a file in the same emptyDir (not the 4 KiB termination message): the
  sidecar checks it (``max_outputs_bytes``) and hands it on in its own termination message, or,
  when that would not fit, stores it under the attempt's report prefix
  (:func:`flowd.artifacts.layout.report_prefix`) and hands on a pointer the executor follows. Why a shell
  wrapper and not Argo's copied binary: flowd ships no static executable, and ``/bin/sh`` is in
  nearly every image; an op without ``command`` (the image's entrypoint, which flowd cannot
  know without asking the registry) runs unwrapped and stores nothing.
* **download**: every ``<store>/<key>`` the rendered command, args or env mention (resolved
  ``ops.X.artifacts…`` / ``ops.X.outputs.<artifact>`` refs) is downloaded by a ``flowd-inputs``
  init container (flowd image) into the emptyDir ``flowd-inputs`` at ``/flowd/inputs/<key>``,
  and the mention is rewritten to that path.

Both flowd containers read the store settings from ``FLOWD_ARTIFACTS_*`` env and the credentials
from the ``artifacts_connection``'s secret (env from a Secret), never from argv.
"""

from __future__ import annotations

import json
import re
from typing import Any
from urllib.parse import urlsplit

from flowd.artifacts.layout import report_prefix
from flowd.artifacts.podside import WRAPPER
from flowd.engine import StartOp
from flowd.k8s.config import Settings

__all__ = ["INPUTS", "OUT", "UPLOADER", "attach", "store_base"]

UPLOADER = "flowd-artifacts"
FETCHER = "flowd-inputs"
MOUNT = "/flowd/artifacts"
OUT = f"{MOUNT}/out"
EXIT = f"{MOUNT}/exit-code"
# the op's $FLOWD_OUTPUTS when the sidecar carries its outputs (no 4 KiB cap on the writer's side)
OUTPUTS = f"{MOUNT}/outputs.json"
INPUTS = "/flowd/inputs"
# the termination message of the uploader carries {"location", "present"}
ENV_DECLARED = "FLOWD_DECLARED_OUTPUTS"


class ArtifactsError(Exception):
    """The deployment's artifact settings cannot serve this pod."""


def store_base(settings: Settings) -> str | None:
    """``s3://bucket[/prefix]`` of the deployment's store, or None when it names none."""
    url = settings.artifacts_store.strip()
    if not url:
        return None
    parts = urlsplit(url)
    if parts.scheme != "s3" or not parts.netloc:
        raise ArtifactsError(f"artifacts_store {url!r}: pods reach only S3-compatible stores (s3://bucket/prefix)")
    prefix = parts.path.strip("/")
    return f"s3://{parts.netloc}/{prefix}" if prefix else f"s3://{parts.netloc}"


def store_env(settings: Settings) -> list[dict[str, Any]]:
    env = [{"name": "FLOWD_ARTIFACTS_STORE", "value": settings.artifacts_store}]
    if settings.artifacts_endpoint:
        env.append({"name": "FLOWD_ARTIFACTS_ENDPOINT", "value": settings.artifacts_endpoint})
    if settings.artifacts_region:
        env.append({"name": "FLOWD_ARTIFACTS_REGION", "value": settings.artifacts_region})
    return env


def _flowd_container(name: str, mode: str, settings: Settings, env: list[dict[str, Any]],
                     mounts: list[dict[str, Any]], creds: Any) -> dict[str, Any]:
    c: dict[str, Any] = {"name": name, "image": settings.init_image,
                         "command": ["python", "-m", "flowd.artifacts.podside", mode],
                         "env": store_env(settings) + env, "volumeMounts": mounts,
                         "terminationMessagePolicy": "FallbackToLogsOnError"}
    if settings.image_pull_policy:
        c["imagePullPolicy"] = settings.image_pull_policy
    creds(c)
    return c


def _strings(value: Any, base: str, found: dict[str, None]) -> None:
    if isinstance(value, str):
        for m in re.finditer(re.escape(base) + r"/([^\s\"',;\]}]+)", value):
            found[m.group(1).rstrip("/")] = None
    elif isinstance(value, dict):
        for v in value.values():
            _strings(v, base, found)
    elif isinstance(value, list):
        for v in value:
            _strings(v, base, found)


def _rewrite(value: Any, base: str) -> Any:
    if isinstance(value, str):
        return re.sub(re.escape(base) + r"/(?=[^\s\"',;\]}])", INPUTS + "/", value)
    if isinstance(value, dict):
        return {k: _rewrite(v, base) for k, v in value.items()}
    if isinstance(value, list):
        return [_rewrite(v, base) for v in value]
    return value


def attach(spec: dict[str, Any], main_name: str, cmd: StartOp, settings: Settings, creds: Any) -> None:
    """Add the upload sidecar and the download init container to ``spec`` (in place).
    ``creds(container)`` adds the artifacts connection's env/secret to a flowd container."""
    base = store_base(settings)
    if base is None:
        return
    main = next(c for c in spec["containers"] if c["name"] == main_name)
    volumes = spec.setdefault("volumes", [])

    found: dict[str, None] = {}
    _strings([main.get("command"), main.get("args"), main.get("env")], base, found)
    if found:
        main["command"] = _rewrite(main.get("command"), base)
        if "args" in main:
            main["args"] = _rewrite(main["args"], base)
        if main.get("env"):
            main["env"] = _rewrite(main["env"], base)
        volumes.append({"name": FETCHER, "emptyDir": {}})
        main["volumeMounts"] = [*(main.get("volumeMounts") or []), {"name": FETCHER, "mountPath": INPUTS}]
        pairs = [[key, f"{INPUTS}/{key}"] for key in found]
        fetcher = _flowd_container(FETCHER, "fetch", settings, [{"name": "FLOWD_FETCH", "value": json.dumps(pairs)}],
                                   [{"name": FETCHER, "mountPath": INPUTS}], creds)
        # first: a user's init container may read the inputs too
        spec["initContainers"] = [fetcher, *(spec.get("initContainers") or [])]

    if cmd.kind != "job" or not main.get("command"):
        return
    prefix = f"{cmd.run_id}/{cmd.path}"
    main["command"] = ["/bin/sh", "-c", WRAPPER, "flowd-wrap", *main["command"], *(main.pop("args", None) or [])]
    mount = {"name": UPLOADER, "mountPath": MOUNT}
    main["volumeMounts"] = [*(main.get("volumeMounts") or []), mount]
    added = {"FLOWD_ARTIFACTS": OUT, "FLOWD_ARTIFACTS_EXIT": EXIT, "FLOWD_OUTPUTS": OUTPUTS}
    main["env"] = [*(e for e in main.get("env") or [] if e.get("name") not in added),
                   *({"name": k, "value": v} for k, v in added.items())]
    volumes.append({"name": UPLOADER, "emptyDir": {}})
    uploader = _flowd_container(UPLOADER, "upload", settings, [
        {"name": "FLOWD_ARTIFACTS", "value": OUT}, {"name": "FLOWD_ARTIFACTS_EXIT", "value": EXIT},
        {"name": "FLOWD_ARTIFACTS_PREFIX", "value": prefix},
        {"name": "FLOWD_OUTPUTS", "value": OUTPUTS},
        {"name": "FLOWD_ARTIFACTS_REPORT", "value": report_prefix(cmd.run_id, cmd.path, cmd.attempt)},
        {"name": "FLOWD_MAX_OUTPUTS_BYTES", "value": str(settings.max_outputs_bytes)},
        {"name": ENV_DECLARED, "value": json.dumps(list(cmd.outputs))},
    ], [mount], creds)
    spec["containers"].append(uploader)

"""StartOp -> Pod (and Service) manifests: pure functions, no I/O.

The input is the op's rendered runtime body (``StartOp.run``, camelCase keys as in a
Polyaxonfile: ``container``, ``environment``, ``init``, ``sidecars``, ``volumes``,
``connections``, and for services ``ports``). The output is a plain dict in the API's JSON
shape, ready to POST. Kubernetes-shaped parts (container, volumes, affinity, tolerations,
securityContext...) pass through untouched: the spec layer validated them and the apiserver
validates them again; flowd only adds what it owns.

What flowd owns on every pod:

* the deterministic name and identity labels/annotations (flowd.k8s.naming);
* ``restartPolicy: Never`` — retries are the engine's (POLYFLOW §5.9 [FLOWD]), never the kubelet's;
* ``activeDeadlineSeconds`` from ``termination.timeout`` (belt and braces: the engine's own
  timer fires too);
* the main container's ``terminationMessagePath`` (``$FLOWD_OUTPUTS``) and
  ``terminationMessagePolicy: FallbackToLogsOnError``: an op writes its outputs there as one
  JSON object (≤ 4 KiB, the kubelet's limit); a failed container without a message gets its log
  tail as the failure message;
* env: the component's, then the connections', then ``toEnv`` params (POLYFLOW §3.8), then
  ``FLOWD_*``;
* the finalizer ``flowd.io/report`` (see flowd.k8s.executor).

Errors in the body that no cluster could accept (an unknown connection, an init step that needs
an image flowd does not ship) and what the pod policy refuses (flowd.k8s.policy: a namespace not
allowed, privileged containers, hostPath, host namespaces, added capabilities, root) raise
:class:`ConversionError`; the executor reports the attempt ``failed`` with reason ``CannotStart``.
"""

from __future__ import annotations

import json
import math
import shlex
from typing import Any

import msgspec

from flowd.connections import named
from flowd.engine import StartOp
from flowd.initsteps.plan import CONTEXT_ROOT, InitError, plan_init, volume_name
from flowd.k8s import artifacts, policy
from flowd.k8s import naming as N
from flowd.k8s.config import Connection, ConnectionResource, Settings
from flowd.partitioning import partition_for

__all__ = [
    "ENVIRONMENT_KEYS",
    "TERMINATION_PATH",
    "ConversionError",
    "build_pod",
    "build_service",
    "identity_annotations",
    "identity_labels",
    "namespace_of",
    "partition_of",
    "pod_spec",
    "user_metadata",
    "env_str",
    "IDENTITY_ENV",
]

TERMINATION_PATH = "/dev/termination-log"
# the main container's env that names the attempt (the rest of a pod does not depend on it)
IDENTITY_ENV = ("FLOWD_RUN_ID", "FLOWD_OP_PATH", "FLOWD_ATTEMPT")

# Polyaxon's V1Environment keys -> the PodSpec field they fill (None: metadata or ignored)
ENVIRONMENT_KEYS: dict[str, str | None] = {
    "labels": None,
    "annotations": None,
    "nodeSelector": "nodeSelector",
    "affinity": "affinity",
    "tolerations": "tolerations",
    "nodeName": "nodeName",
    "serviceAccountName": "serviceAccountName",
    "hostAliases": "hostAliases",
    "securityContext": "securityContext",
    "imagePullSecrets": "imagePullSecrets",
    "hostNetwork": "hostNetwork",
    "hostPID": "hostPID",
    "dnsPolicy": "dnsPolicy",
    "dnsConfig": "dnsConfig",
    "schedulerName": "schedulerName",
    "priorityClassName": "priorityClassName",
    "priority": "priority",
    "runtimeClassName": "runtimeClassName",
    "topologySpreadConstraints": "topologySpreadConstraints",
    # restartPolicy is always Never (retries are the engine's); accepted and ignored
    "restartPolicy": None,
}


class ConversionError(Exception):
    """The op's runtime body cannot become a pod (a user error; the attempt fails)."""


# ------------------------------------------------------------------------------ identity


def namespace_of(cmd: StartOp, settings: Settings) -> str:
    """op -> component (both arrive as ``StartOp.namespace``) -> the daemon's default."""
    return cmd.namespace or settings.namespace


def partition_of(run_id: str, settings: Settings) -> str:
    """The owner partition label: fixed per daemon, or the ``runs`` partition the daemon routes
    the run to (Kafka's partitioner over ``partition_count`` partitions)."""
    if settings.partition is not None:
        return settings.partition
    if settings.partition_count > 0:
        return str(partition_for(run_id, settings.partition_count))
    return "0"


def identity_labels(cmd: StartOp, settings: Settings, name: str) -> dict[str, str]:
    return {
        **settings.extra_labels,
        N.L_MANAGED_BY: N.MANAGED_BY,
        N.L_RUN: N.label_value(cmd.run_id),
        N.L_OP: N.label_value(cmd.path),
        N.L_ATTEMPT: str(cmd.attempt),
        N.L_PARTITION: partition_of(cmd.run_id, settings),
        N.L_KIND: N.label_value(cmd.kind),
        N.L_POD: name,
    }


def identity_annotations(cmd: StartOp, settings: Settings, *, main: str | None = None) -> dict[str, str]:
    out = {N.A_RUN_ID: cmd.run_id, N.A_OP_PATH: cmd.path, N.A_ATTEMPT: str(cmd.attempt), N.A_KEY: cmd.key}
    ttl = cmd.termination.ttl if cmd.termination.ttl is not None else settings.default_ttl
    if ttl is not None:
        out[N.A_TTL] = f"{ttl:g}"
    if main is not None:
        out[N.A_MAIN] = main
    return out


# --------------------------------------------------------------------------------- pods


def checked_namespace(cmd: StartOp, settings: Settings) -> str:
    """The op's namespace, if the pod policy allows it (else ConversionError)."""
    namespace = namespace_of(cmd, settings)
    try:
        policy.check_namespace(namespace, settings)
    except policy.PolicyError as exc:
        raise ConversionError(str(exc)) from None
    return namespace


def build_pod(cmd: StartOp, settings: Settings) -> dict[str, Any]:
    """The Pod for one attempt of a ``job`` or ``service`` op."""
    name = N.pod_name(cmd.run_id, cmd.path, cmd.attempt)
    run = cmd.run or {}
    namespace = checked_namespace(cmd, settings)
    spec, main = pod_spec(run, cmd, settings)
    try:
        artifacts.attach(spec, main, cmd, settings, lambda c: _artifacts_credentials(c, settings))
    except artifacts.ArtifactsError as exc:
        raise ConversionError(str(exc)) from None
    policy.harden(spec, settings)  # the flowd containers just added
    labels, annotations = user_metadata(run)
    metadata: dict[str, Any] = {
        "name": name,
        "namespace": namespace,
        "labels": {**labels, **identity_labels(cmd, settings, name)},
        "annotations": {**annotations, **identity_annotations(cmd, settings, main=main)},
    }
    if settings.finalizer:
        metadata["finalizers"] = [N.FINALIZER]
    if cmd.termination.timeout:
        spec["activeDeadlineSeconds"] = max(1, math.ceil(cmd.termination.timeout))
    if cmd.kind == "service":
        _ensure_ports(spec, main, service_ports(run))
    return {"apiVersion": "v1", "kind": "Pod", "metadata": metadata, "spec": spec}


def user_metadata(run: dict[str, Any]) -> tuple[dict[str, str], dict[str, str]]:
    """The op's own labels and annotations (``run.environment``); flowd's identity ones go over them."""
    env_meta = run.get("environment") or {}
    return (_str_map(env_meta.get("labels"), "environment.labels"),
            _str_map(env_meta.get("annotations"), "environment.annotations"))


def pod_spec(run: dict[str, Any], cmd: StartOp, settings: Settings, *,
             main_name: str | None = None) -> tuple[dict[str, Any], str]:
    """The PodSpec of a runtime body (a job, or one replica of a distributed job) and the name
    of its main container."""
    if not isinstance(run, dict):
        raise ConversionError("the runtime body must be a mapping")
    container = run.get("container")
    if not isinstance(container, dict) or not container.get("image"):
        raise ConversionError("run.container with an image is required to run on Kubernetes")
    main = _container(container, main_name or settings.main_container, settings)
    main.setdefault("terminationMessagePath", TERMINATION_PATH)
    main.setdefault("terminationMessagePolicy", "FallbackToLogsOnError")
    spec: dict[str, Any] = {"restartPolicy": "Never", "containers": [main]}

    env = run.get("environment") or {}
    if not isinstance(env, dict):
        raise ConversionError("run.environment must be a mapping")
    for key, value in env.items():
        if key not in ENVIRONMENT_KEYS:
            raise ConversionError(f"run.environment: unknown field {key!r}")
        target = ENVIRONMENT_KEYS[key]
        if target is None or value is None:
            continue
        if key == "imagePullSecrets":
            value = [{"name": v} if isinstance(v, str) else v for v in value]
        spec[target] = value

    volumes: list[dict[str, Any]] = [v for v in (run.get("volumes") or []) if isinstance(v, dict)]
    try:
        policy.check_volumes(volumes, settings)  # before the operator's connection volumes join
    except policy.PolicyError as exc:
        raise ConversionError(str(exc)) from None
    extra_env: list[dict[str, Any]] = []
    env_from: list[dict[str, Any]] = []
    mounts: list[dict[str, Any]] = []
    for conn_name in run.get("connections") or []:
        _connection(_lookup(conn_name, settings), volumes, mounts, extra_env, env_from)

    main["env"] = _merge_env(
        main.get("env") or [],
        extra_env,
        [{"name": k, "value": _env_str(v)} for k, v in cmd.env.items()],
        [
            {"name": "FLOWD_OUTPUTS", "value": main["terminationMessagePath"]},
            # IDENTITY_ENV
            {"name": "FLOWD_RUN_ID", "value": cmd.run_id},
            {"name": "FLOWD_OP_PATH", "value": cmd.path},
            {"name": "FLOWD_ATTEMPT", "value": str(cmd.attempt)},
            # intermediate metrics: print `FLOWD_METRIC {"step": 1, "loss": 0.5}` (flowd.k8s.metriclogs)
            {"name": "FLOWD_METRICS_PREFIX", "value": N.METRICS_PREFIX},
        ],
    )
    if env_from:
        main["envFrom"] = list(main.get("envFrom") or []) + env_from
    if mounts:
        main["volumeMounts"] = list(main.get("volumeMounts") or []) + mounts

    inits = _init_containers(run, settings, volumes)
    if inits:
        spec["initContainers"] = inits
    context_mounts = [{"name": volume_name(m), "mountPath": m} for m in _context_mounts(inits)]
    if context_mounts:
        main["volumeMounts"] = list(main.get("volumeMounts") or []) + context_mounts
        main["env"] = _merge_env(main["env"], [{"name": "FLOWD_CONTEXT", "value": CONTEXT_ROOT}])
    for i, sidecar in enumerate(run.get("sidecars") or []):
        if not isinstance(sidecar, dict):
            raise ConversionError(f"run.sidecars[{i}] must be a container mapping")
        spec["containers"].append(_container(sidecar, f"sidecar-{i}", settings))
    names = [c["name"] for c in spec["containers"] + inits]
    if len(set(names)) != len(names):
        raise ConversionError(f"container names must be unique in a pod: {names}")
    if volumes:
        spec["volumes"] = volumes
    try:
        policy.check_pod_spec(spec, settings)
    except policy.PolicyError as exc:
        raise ConversionError(str(exc)) from None
    policy.harden(spec, settings)
    return spec, main["name"]


def _container(body: dict[str, Any], default_name: str, settings: Settings) -> dict[str, Any]:
    c = dict(body)
    c["name"] = str(c.get("name") or default_name)
    if "command" in c:
        c["command"] = _argv(c["command"], split=True)
    if "args" in c:
        c["args"] = _argv(c["args"], split=False)
    if c.get("env"):
        c["env"] = [_env_var(e) for e in c["env"]]
    if c.get("ports"):
        c["ports"] = [{"containerPort": p} if isinstance(p, int) else p for p in c["ports"]]
    if settings.image_pull_policy and "imagePullPolicy" not in c:
        c["imagePullPolicy"] = settings.image_pull_policy
    return c


def _init_containers(run: dict[str, Any], settings: Settings, volumes: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """``run.init`` -> init containers (flowd.initsteps.plan): built-in steps run
    ``python -m flowd.initsteps step STEP`` in the flowd image (``init_image``) with their context
    volume and their connection's env and secrets; ``container`` steps run as given, with every
    context volume mounted. The context volumes are emptyDirs the main container mounts too."""
    try:
        plan = plan_init(run.get("init"), _catalog(settings))
    except InitError as exc:
        raise ConversionError(str(exc)) from None
    for mount in plan.mounts:
        volumes.append({"name": volume_name(mount), "emptyDir": {}})
    all_mounts = [{"name": volume_name(m), "mountPath": m} for m in plan.mounts]
    out = []
    for step in plan.steps:
        env: list[dict[str, Any]] = []
        env_from: list[dict[str, Any]] = []
        mounts: list[dict[str, Any]] = []
        if step.connection is not None:
            _connection(_lookup(step.connection, settings), volumes, mounts, env, env_from)
        if step.kind == "container":
            assert step.container is not None
            c = _container(step.container, step.name, settings)
            mounts = all_mounts + mounts
        else:
            body = msgspec.json.encode(msgspec.structs.replace(step, container=None)).decode()
            c = {"name": step.name, "image": settings.init_image, "command": ["python", "-m", "flowd.initsteps"],
                 "args": ["step", body], "terminationMessagePolicy": "FallbackToLogsOnError"}
            if settings.image_pull_policy:
                c["imagePullPolicy"] = settings.image_pull_policy
            assert step.mount is not None
            mounts = [{"name": volume_name(step.mount), "mountPath": step.mount}, *mounts]
            if step.container:  # Polyaxon's patch of a built-in step's container (resources, env...)
                patch = _container(step.container, step.name, settings)
                for key, value in patch.items():
                    if key in ("env", "volumeMounts", "envFrom"):
                        c[key] = list(c.get(key) or []) + list(value)
                    elif key not in ("name", "command", "args"):
                        c[key] = value
        if step.kind == "artifacts" and step.connection is None:
            # the deployment's store (flowd.k8s.artifacts): its settings and credentials
            if not settings.artifacts_store:
                raise ConversionError(f"run.{step.label}: an artifacts step without a connection reads the "
                                      "deployment's artifact store; set artifacts_store in the executor settings")
            env = artifacts.store_env(settings) + env
            _artifacts_credentials(c, settings)
        if env:
            c["env"] = _merge_env(c.get("env") or [], env)
        if env_from:
            c["envFrom"] = list(c.get("envFrom") or []) + env_from
        if mounts:
            c["volumeMounts"] = list(c.get("volumeMounts") or []) + mounts
        out.append(c)
    # a connection used by a step and by the op brings its volume once
    unique = {str(v.get("name")): v for v in reversed(volumes)}
    volumes[:] = [v for v in volumes if unique.get(str(v.get("name"))) is v]
    return out


def _context_mounts(inits: list[dict[str, Any]]) -> list[str]:
    found: list[str] = []
    for c in inits:
        for m in c.get("volumeMounts") or []:
            name = str(m.get("name", ""))
            if (name == "artifacts-context" or name.startswith("connections-context-")) and m["mountPath"] not in found:
                found.append(m["mountPath"])
    return found


def _artifacts_credentials(container: dict[str, Any], settings: Settings) -> None:
    """The artifacts connection's env and secret on a flowd artifacts container (an S3
    connection's secret holds AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY; Polyaxon's layout)."""
    if not settings.artifacts_connection:
        return
    env: list[dict[str, Any]] = []
    env_from: list[dict[str, Any]] = []
    mounts: list[dict[str, Any]] = []
    volumes: list[dict[str, Any]] = []
    _connection(_lookup(settings.artifacts_connection, settings), volumes, mounts, env, env_from)
    if volumes:
        raise ConversionError(f"artifacts_connection {settings.artifacts_connection!r}: its secret must come as "
                              "env (no mountPath): the flowd containers read AWS_* from their environment")
    container["env"] = _merge_env(container.get("env") or [], env)
    if env_from:
        container["envFrom"] = env_from


def _catalog(settings: Settings) -> dict[str, Connection]:
    return named(settings.connections)


def _argv(value: Any, *, split: bool) -> list[str]:
    if value is None:
        return []
    if isinstance(value, str):
        # a string command is a command line; a string args is one argument (``sh -c "..."``)
        return shlex.split(value) if split else [value]
    return [_env_str(v) for v in value]


def env_str(value: Any) -> str:
    """An env value as the pod carries it: strings as they are, anything else as JSON."""
    return value if isinstance(value, str) else json.dumps(value)


_env_str = env_str


def _env_var(item: Any) -> dict[str, Any]:
    if not isinstance(item, dict) or "name" not in item:
        raise ConversionError(f"env entries need a name: {item!r}")
    if "value" in item and item["value"] is not None:
        return {**item, "value": _env_str(item["value"])}
    return item


def _merge_env(*groups: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Later groups win by name; the first position of a name is kept (stable output)."""
    merged: dict[str, dict[str, Any]] = {}
    for group in groups:
        for item in group:
            merged[item["name"]] = item
    return list(merged.values())


def _str_map(value: Any, where: str) -> dict[str, str]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise ConversionError(f"{where} must be a mapping")
    return {str(k): _env_str(v) for k, v in value.items()}


# -------------------------------------------------------------------------- connections


def _lookup(name: Any, settings: Settings) -> Connection:
    conn = settings.connections.get(str(name))
    if conn is None:
        known = ", ".join(sorted(settings.connections)) or "none configured"
        raise ConversionError(f"unknown connection {name!r} (known: {known})")
    return conn if conn.name else Connection(**{**_fields(conn), "name": str(name)})


def _fields(conn: Connection) -> dict[str, Any]:
    return {f: getattr(conn, f) for f in conn.__struct_fields__}


def _volume_name(conn: str, what: str) -> str:
    return N.label_value(f"c-{what}-{conn}".lower()).replace("_", "-").replace(".", "-")[:63].strip("-")


def _connection(conn: Connection, volumes: list[dict[str, Any]], mounts: list[dict[str, Any]],
                env: list[dict[str, Any]], env_from: list[dict[str, Any]]) -> None:
    for what, res in (("secret", conn.secret), ("configMap", conn.config_map)):
        if res is None:
            continue
        _resource(conn.name, what, res, volumes, mounts, env, env_from)
    schema = conn.schema or {}
    if conn.kind in ("host_path", "volume_claim"):
        mount_path = schema.get("mountPath")
        if not mount_path:
            raise ConversionError(f"connection {conn.name!r}: schema.mountPath is required for {conn.kind}")
        vname = _volume_name(conn.name, "v")
        if conn.kind == "host_path":
            if not schema.get("hostPath"):
                raise ConversionError(f"connection {conn.name!r}: schema.hostPath is required")
            volumes.append({"name": vname, "hostPath": {"path": schema["hostPath"]}})
        else:
            if not schema.get("volumeClaim"):
                raise ConversionError(f"connection {conn.name!r}: schema.volumeClaim is required")
            volumes.append({"name": vname, "persistentVolumeClaim": {
                "claimName": schema["volumeClaim"], "readOnly": bool(schema.get("readOnly", False))}})
        mounts.append({"name": vname, "mountPath": mount_path, "readOnly": bool(schema.get("readOnly", False))})
    env.extend(_env_var(e) for e in conn.env)


def _resource(conn: str, what: str, res: ConnectionResource, volumes: list[dict[str, Any]],
              mounts: list[dict[str, Any]], env: list[dict[str, Any]], env_from: list[dict[str, Any]]) -> None:
    if res.mount_path:
        vname = _volume_name(conn, "s" if what == "secret" else "cm")
        source: dict[str, Any] = {"secretName": res.name} if what == "secret" else {"name": res.name}
        if res.items:
            source["items"] = [{"key": k, "path": k} for k in res.items]
        volumes.append({"name": vname, what: source})
        mounts.append({"name": vname, "mountPath": res.mount_path, "readOnly": True})
    elif res.items:
        ref = "secretKeyRef" if what == "secret" else "configMapKeyRef"
        env.extend({"name": k, "valueFrom": {ref: {"name": res.name, "key": k}}} for k in res.items)
    else:
        env_from.append({"secretRef" if what == "secret" else "configMapRef": {"name": res.name}})


# ------------------------------------------------------------------------------ services


def service_ports(run: dict[str, Any]) -> list[dict[str, Any]]:
    """``run.ports`` of a service: ints or ``{port, targetPort, name, protocol}``."""
    out = []
    for p in run.get("ports") or []:
        if isinstance(p, int):
            out.append({"name": f"p-{p}", "port": p, "targetPort": p})
        elif isinstance(p, dict) and isinstance(p.get("port"), int):
            out.append({"name": p.get("name") or f"p-{p['port']}", "targetPort": p.get("targetPort", p["port"]), **p})
        else:
            raise ConversionError(f"run.ports: expected a port number, got {p!r}")
    return out


def _ensure_ports(spec: dict[str, Any], main: str, ports: list[dict[str, Any]]) -> None:
    container = next(c for c in spec["containers"] if c["name"] == main)
    have = {p.get("containerPort") for p in container.get("ports") or []}
    extra = [{"containerPort": p["targetPort"]} for p in ports
             if isinstance(p["targetPort"], int) and p["targetPort"] not in have]
    if extra:
        container["ports"] = list(container.get("ports") or []) + extra


def build_service(cmd: StartOp, settings: Settings, pod: dict[str, Any]) -> dict[str, Any] | None:
    """The Service in front of a ``kind: service`` pod (same name), or None without ports."""
    ports = service_ports(cmd.run or {})
    if not ports:
        return None
    meta = pod["metadata"]
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {
            "name": meta["name"],
            "namespace": meta["namespace"],
            "labels": identity_labels(cmd, settings, meta["name"]),
            "annotations": {k: v for k, v in meta["annotations"].items() if k.startswith(N.DOMAIN + "/")},
        },
        "spec": {"type": "ClusterIP", "selector": {N.L_POD: meta["name"]}, "ports": ports},
    }

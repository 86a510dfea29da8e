"""What a submitted op may ask of the cluster: flowd's pod policy (pure, no I/O).

Whoever can write one record to the ``runs`` topic chooses the op's runtime body, and the
daemon creates pods with its own ServiceAccount. Without a policy a submission could ask for
anything that account may create: a privileged container, the node's filesystem (``hostPath``),
its network or process namespaces, extra Linux capabilities, root, in any namespace the Role
reaches. :func:`check_namespace` and :func:`check_pod_spec` refuse those unless the executor's
config allows them; a refusal raises :class:`PolicyError` (a ``ConversionError``), so the
attempt fails with reason ``CannotStart`` and a message naming the field.

:func:`harden` fills in what the Pod Security Standard ``restricted`` asks for where the op said
nothing (``runAsNonRoot``, ``seccompProfile: RuntimeDefault``, ``allowPrivilegeEscalation:
false``, ``capabilities.drop: [ALL]``), so ordinary ops run in namespaces labelled
``pod-security.kubernetes.io/enforce=restricted``. The apiserver's Pod Security Admission is the
second wall: it refuses what this check would have refused even when the check is off.

Volumes that come from the operator's connection catalog (``kind: host_path``) are the
operator's choice, not the submitter's: only ``run.volumes`` is checked for ``hostPath``.
"""

from __future__ import annotations

from typing import Any

from flowd.k8s.config import Settings

__all__ = ["PolicyError", "allowed_namespaces", "check_namespace", "check_pod_spec", "check_volumes", "harden"]

HOST_NAMESPACES = ("hostNetwork", "hostPID", "hostIPC")
CONTAINER_LISTS = ("initContainers", "containers", "ephemeralContainers")


class PolicyError(Exception):
    """The op asks for something the executor's pod policy refuses (flowd.k8s.pod raises it
    on as a ConversionError, so the executor fails the attempt with ``CannotStart``)."""


def _refuse(field: str, what: str, setting: str) -> PolicyError:
    return PolicyError(f"refused by the pod policy: {field} {what} (the executor setting `{setting}` allows it)")


def allowed_namespaces(settings: Settings) -> list[str]:
    """The namespaces a submission may use: ``allowed_namespaces``, else the daemon's own."""
    return list(settings.allowed_namespaces) or [settings.namespace]


def check_namespace(namespace: str, settings: Settings) -> None:
    allowed = allowed_namespaces(settings)
    if "*" in allowed or namespace in allowed:
        return
    raise PolicyError(f"refused by the pod policy: namespace {namespace!r} is not allowed (allowed: "
                      f"{', '.join(allowed)}; the executor setting `allowed_namespaces` adds others)")


def check_volumes(volumes: list[dict[str, Any]], settings: Settings, *, where: str = "run.volumes") -> None:
    if not settings.pod_policy or settings.allow_host_path:
        return
    for i, volume in enumerate(volumes):
        if isinstance(volume, dict) and volume.get("hostPath") is not None:
            raise _refuse(f"{where}[{i}].hostPath", f"(volume {volume.get('name')!r}) mounts a path of the node",
                          "allow_host_path")


def _is_true(value: Any) -> bool:
    return value is True or (isinstance(value, str) and value.lower() == "true")


def _check_root(ctx: dict[str, Any], field: str) -> None:
    user = ctx.get("runAsUser")
    if user is not None and str(user) == "0":
        raise _refuse(f"{field}.runAsUser", "is 0 (root)", "allow_root")
    if ctx.get("runAsNonRoot") is False:
        raise _refuse(f"{field}.runAsNonRoot", "is false", "allow_root")


def check_pod_spec(spec: dict[str, Any], settings: Settings) -> None:
    """Refuse privileged containers, host namespaces, added capabilities and root."""
    if not settings.pod_policy:
        return
    if not settings.allow_host_namespaces:
        for key in HOST_NAMESPACES:
            if _is_true(spec.get(key)):
                raise _refuse(f"environment.{key}", "is true", "allow_host_namespaces")
    pod_ctx = spec.get("securityContext") or {}
    if not settings.allow_root and isinstance(pod_ctx, dict):
        _check_root(pod_ctx, "environment.securityContext")
    allowed_caps = {c.upper() for c in settings.allowed_capabilities}
    for kind in CONTAINER_LISTS:
        for c in spec.get(kind) or []:
            ctx = c.get("securityContext") or {}
            if not isinstance(ctx, dict):
                continue
            field = f"{kind}[{c.get('name')}].securityContext"
            if not settings.allow_privileged:
                if _is_true(ctx.get("privileged")):
                    raise _refuse(f"{field}.privileged", "is true", "allow_privileged")
                if _is_true(ctx.get("allowPrivilegeEscalation")):
                    raise _refuse(f"{field}.allowPrivilegeEscalation", "is true", "allow_privileged")
            added = (ctx.get("capabilities") or {}).get("add") or []
            extra = [str(cap) for cap in added if "*" not in allowed_caps and str(cap).upper().removeprefix("CAP_")
                     not in allowed_caps]
            if extra:
                raise _refuse(f"{field}.capabilities.add", f"asks for {', '.join(extra)}", "allowed_capabilities")
            if not settings.allow_root:
                _check_root(ctx, field)


def harden(spec: dict[str, Any], settings: Settings) -> None:
    """Fill in the ``restricted`` Pod Security Standard where the op set nothing (in place)."""
    if not settings.restricted_defaults:
        return
    # copies, not setdefault on what is there: those dicts are the op's runtime body
    # (StartOp.run, shared with the engine's state), which a pod must never write into
    pod_ctx = spec.get("securityContext", {})
    if not isinstance(pod_ctx, dict):
        return
    pod_ctx = spec["securityContext"] = dict(pod_ctx)
    if not settings.allow_root:
        pod_ctx.setdefault("runAsNonRoot", True)
    pod_ctx.setdefault("seccompProfile", {"type": "RuntimeDefault"})
    for kind in CONTAINER_LISTS:
        for c in spec.get(kind) or []:
            ctx = c.get("securityContext", {})
            if not isinstance(ctx, dict) or _is_true(ctx.get("privileged")):
                continue
            ctx = c["securityContext"] = dict(ctx)
            ctx.setdefault("allowPrivilegeEscalation", False)
            caps = ctx.get("capabilities", {})
            if isinstance(caps, dict):
                caps = ctx["capabilities"] = dict(caps)
                caps.setdefault("drop", ["ALL"])

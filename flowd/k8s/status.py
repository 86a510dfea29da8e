"""Pod (and Kubeflow job) JSON -> the op status it means: pure functions, no I/O, no clock.

``observe(pod, now=...)`` reads one pod as the apiserver returns it (a dict in the API's JSON
shape) and answers with an :class:`Observation`: the flowd status (POLYFLOW §5.1) plus reason,
message, exit code and outputs. The executor turns observations into ``OpStatus`` reports and
deduplicates them; everything about *meaning* lives here and is tested on recorded pod JSON.

The table, in order of precedence:

=====================================================  ====================================
pod                                                    status (reason)
=====================================================  ====================================
phase Succeeded                                        succeeded; outputs from the artifacts
                                                       sidecar's report (inline, or a pointer
                                                       into the store: ``report`` set, the
                                                       executor reads it and calls
                                                       :func:`with_report`), else from the main
                                                       container's termination message (JSON)
phase Failed                                           failed (status.reason, e.g.
                                                       DeadlineExceeded/Evicted; else the
                                                       failing container's: OOMKilled, Error..)
deletionTimestamp, not finished, grace over            gone (the executor decides: stopped
                                                       if flowd deleted it, else failed with
                                                       reason ``pod missing``)
waiting ErrImagePull/ImagePullBackOff/... > timeout    failed (that reason)
waiting ErrImagePull/ImagePullBackOff/...              warning (that reason)
PodScheduled False, reason Unschedulable               unschedulable (the scheduler's message)
phase Pending, no node                                 scheduled
phase Pending, on a node                               starting
phase Running                                          running
anything else                                          unknown
=====================================================  ====================================
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

import msgspec

from flowd.artifacts.outputs import bind_outputs
from flowd.engine import status as S
from flowd.k8s import naming as N
from flowd.k8s.artifacts import ENV_DECLARED, UPLOADER
from flowd.k8s.artifacts import OUT as UPLOAD_STAGING
from flowd.outputs import parse_outputs

__all__ = ["Observation", "GONE", "observe", "identity", "parse_time", "finished_at", "kubeflow_observe",
           "STUCK_WAITING_REASONS", "with_report"]

# a status only the executor interprets: the pod is going away without having finished
GONE = "gone"

# container waiting reasons that do not heal on their own (the kubelet keeps backing off)
STUCK_WAITING_REASONS = frozenset({
    "ErrImagePull", "ImagePullBackOff", "InvalidImageName", "ErrImageNeverPull",
    "CreateContainerConfigError", "CreateContainerError", "CrashLoopBackOff",
})
MAX_MESSAGE = 2000


class Observation(msgspec.Struct, frozen=True, omit_defaults=True):
    status: str
    reason: str | None = None
    message: str | None = None
    exit_code: int | None = None
    outputs: dict[str, Any] | None = None
    # succeeded, but the outputs are in the store: the uploader's pointer {"at", "bytes", "sha256"}
    report: dict[str, Any] | None = None


def parse_time(text: str | None) -> float | None:
    if not text:
        return None
    try:
        return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()
    except ValueError:
        return None


def identity(obj: dict[str, Any]) -> tuple[str, str, int, str] | None:
    """(run id, op path, attempt, key) from flowd's annotations, or None if not flowd's."""
    ann = (obj.get("metadata") or {}).get("annotations") or {}
    try:
        return ann[N.A_RUN_ID], ann[N.A_OP_PATH], int(ann[N.A_ATTEMPT]), ann[N.A_KEY]
    except (KeyError, ValueError):
        return None


def _main_status(pod: dict[str, Any]) -> dict[str, Any] | None:
    meta = pod.get("metadata") or {}
    main = (meta.get("annotations") or {}).get(N.A_MAIN)
    statuses = (pod.get("status") or {}).get("containerStatuses") or []
    if main is None:
        containers = (pod.get("spec") or {}).get("containers") or []
        main = containers[0]["name"] if containers else None
    for cs in statuses:
        if cs.get("name") == main:
            return cs
    return statuses[0] if statuses else None


def _terminated(cs: dict[str, Any] | None) -> dict[str, Any] | None:
    if not cs:
        return None
    return (cs.get("state") or {}).get("terminated") or (cs.get("lastState") or {}).get("terminated")


def finished_at(pod: dict[str, Any]) -> float | None:
    term = _terminated(_main_status(pod))
    return parse_time(term.get("finishedAt")) if term else None


def _clip(text: str | None) -> str | None:
    if not text:
        return None
    text = text.strip()
    return text if len(text) <= MAX_MESSAGE else "…" + text[-MAX_MESSAGE:]


def _outputs(message: str | None) -> tuple[dict[str, Any] | None, str | None]:
    return parse_outputs(message, "the termination message ($FLOWD_OUTPUTS)")


def _succeeded(pod: dict[str, Any]) -> Observation:
    told = _uploader_message(pod)
    if told is not None and isinstance(told.get("report"), dict):
        return Observation(S.SUCCEEDED, exit_code=0, report=told["report"])
    return with_report(pod, told)


def with_report(pod: dict[str, Any], told: dict[str, Any] | None) -> Observation:
    """The ``succeeded`` observation of ``pod`` given the artifacts sidecar's report ``told``
    (``{"location", "present", "outputs"?}``: from its termination message, or read back from the
    store by the executor; None without a sidecar report). Outputs are the report's when it
    carries them (the op wrote ``$FLOWD_OUTPUTS`` into the sidecar's emptyDir), else the main
    container's termination message; file outputs are bound to store locations."""
    if told is not None and "outputs" in told:
        outputs = told["outputs"]
        if not isinstance(outputs, dict):
            return Observation(S.FAILED, reason="InvalidOutputs", exit_code=0,
                               message="the outputs report must carry a JSON object")
    else:
        term = _terminated(_main_status(pod)) or {}
        outputs, error = _outputs(term.get("message"))
        if error is not None:
            return Observation(S.FAILED, reason="InvalidOutputs", message=error, exit_code=0)
    if told is not None:
        try:
            location, present = str(told["location"]), {str(n) for n in told["present"]}
        except (KeyError, TypeError):
            return Observation(S.FAILED, reason="InvalidOutputs", exit_code=0,
                               message="the artifacts sidecar's report lacks location/present")
        outputs = bind_outputs(outputs, _declared(pod), present, staging=UPLOAD_STAGING, location=location)
    return Observation(S.SUCCEEDED, exit_code=0, outputs=outputs)


def _uploader_message(pod: dict[str, Any]) -> dict[str, Any] | None:
    """What the ``flowd-artifacts`` sidecar (flowd.k8s.artifacts) told in its termination
    message: ``{"location", "present", "outputs"?}`` or a pointer ``{"location", "report"}``;
    None without a (readable) one."""
    for cs in (pod.get("status") or {}).get("containerStatuses") or []:
        if cs.get("name") == UPLOADER:
            try:
                told = json.loads((_terminated(cs) or {}).get("message") or "")
            except ValueError:
                return None
            return told if isinstance(told, dict) and "location" in told else None
    return None


def _declared(pod: dict[str, Any]) -> list[str]:
    """The op's declared outputs, from the sidecar's env."""
    for c in (pod.get("spec") or {}).get("containers") or []:
        for e in c.get("env") or [] if c.get("name") == UPLOADER else []:
            if e.get("name") == ENV_DECLARED:
                try:
                    return [str(n) for n in json.loads(e.get("value") or "[]")]
                except ValueError:
                    return []
    return []


def _main_failed_early(pod: dict[str, Any]) -> Observation | None:
    """With the artifacts sidecar, a pod stays Running after its main container failed until
    the sidecar ends; the op has failed already (and a main container that could not start,
    e.g. an image without /bin/sh for the wrapper, never tells the sidecar: the executor
    deletes such a pod once this is reported, so it does not run on forever)."""
    names = {c.get("name") for c in (pod.get("spec") or {}).get("containers") or []}
    if UPLOADER not in names:
        return None
    term = _terminated(_main_status(pod))
    if term is None or term.get("exitCode", 0) == 0:
        return None
    message = term.get("message") or f"exited with code {term.get('exitCode')}"
    if _no_shell(message):
        message = (f"image {_main_image(pod)!r} has no /bin/sh, which flowd's artifacts wrapper needs to run "
                   f"the op's command (docs/artifacts.md, 'Why a shell wrapper'): {message}")
    return Observation(S.FAILED, reason=term.get("reason") or "Error", message=_clip(message),
                       exit_code=term.get("exitCode"))


def _no_shell(message: str) -> bool:
    """The runtime's start error for a missing /bin/sh (containerd/runc: ``exec: "/bin/sh": stat
    /bin/sh: no such file or directory``; CRI-O and Docker word it alike)."""
    text = message.lower()
    return "/bin/sh" in text and ("no such file" in text or "not found" in text)


def _main_image(pod: dict[str, Any]) -> str:
    main = _main_status(pod) or {}
    for c in (pod.get("spec") or {}).get("containers") or []:
        if c.get("name") == main.get("name"):
            return str(c.get("image") or main.get("image") or "?")
    return str(main.get("image") or "?")


def _failed(pod: dict[str, Any]) -> Observation:
    st = pod.get("status") or {}
    main = _main_status(pod)
    term = _terminated(main)
    failing = term
    where = ""
    if term is None or term.get("exitCode", 0) == 0:
        # the main container did not fail: an init container or a sidecar did
        for group, label in (("initContainerStatuses", "init container"), ("containerStatuses", "container")):
            for cs in st.get(group) or []:
                t = _terminated(cs)
                if t and t.get("exitCode", 0) != 0:
                    failing, where = t, f"{label} {cs.get('name')}: "
                    break
            if where:
                break
    reason = st.get("reason") or (failing or {}).get("reason") or "Error"
    exit_code = (failing or {}).get("exitCode")
    message = st.get("message") or (failing or {}).get("message")
    if message and where:
        message = where + message
    elif where:
        message = where.rstrip(": ") + f" exited with code {exit_code}"
    if where.startswith("init"):
        reason = st.get("reason") or "InitError"
    return Observation(S.FAILED, reason=reason, message=_clip(message), exit_code=exit_code)


def _scheduled_since(pod: dict[str, Any]) -> float | None:
    st = pod.get("status") or {}
    for cond in st.get("conditions") or []:
        if cond.get("type") == "PodScheduled" and cond.get("status") == "True":
            return parse_time(cond.get("lastTransitionTime"))
    return parse_time(st.get("startTime")) or parse_time((pod.get("metadata") or {}).get("creationTimestamp"))


def _stuck(pod: dict[str, Any]) -> tuple[str, str | None] | None:
    st = pod.get("status") or {}
    for group in ("initContainerStatuses", "containerStatuses"):
        for cs in st.get(group) or []:
            waiting = (cs.get("state") or {}).get("waiting") or {}
            if waiting.get("reason") in STUCK_WAITING_REASONS:
                return waiting["reason"], f"{cs.get('name')}: {waiting.get('message') or waiting['reason']}"
    return None


def observe(pod: dict[str, Any], *, now: float, stuck_timeout: float = 300.0) -> Observation:
    """What this pod means for its op (see the module docstring for the table)."""
    meta = pod.get("metadata") or {}
    st = pod.get("status") or {}
    phase = st.get("phase")
    if phase == "Succeeded":
        return _succeeded(pod)
    if phase == "Failed":
        return _failed(pod)
    early = _main_failed_early(pod) if phase in ("Running", "Pending") else None
    if early is not None:
        return early
    deleted = parse_time(meta.get("deletionTimestamp"))
    if deleted is not None:
        # without a kubelet answering, a pod being deleted never finishes: conclude once the
        # grace period is over (a force delete or kwok sets it to 0)
        grace = meta.get("deletionGracePeriodSeconds")
        if grace == 0 or now >= deleted:
            return Observation(GONE, reason="pod missing", message="the pod was deleted before it finished")
    stuck = _stuck(pod)
    if stuck is not None:
        reason, message = stuck
        since = _scheduled_since(pod)
        if since is not None and now - since >= stuck_timeout:
            return Observation(S.FAILED, reason=reason, message=_clip(f"{message} (for over {stuck_timeout:g}s)"))
        return Observation(S.WARNING, reason=reason, message=_clip(message))
    if phase == "Pending":
        for cond in st.get("conditions") or []:
            if cond.get("type") == "PodScheduled" and cond.get("status") == "False" and cond.get("reason") == "Unschedulable":
                return Observation(S.UNSCHEDULABLE, reason="Unschedulable", message=_clip(cond.get("message")))
        if not (pod.get("spec") or {}).get("nodeName"):
            return Observation(S.SCHEDULED)
        return Observation(S.STARTING)
    if phase == "Running":
        return Observation(S.RUNNING)
    return Observation(S.UNKNOWN, reason=st.get("reason"), message=_clip(st.get("message")))


# ------------------------------------------------------------------------------ kubeflow


def kubeflow_observe(job: dict[str, Any]) -> Observation:
    """A Kubeflow TFJob/PyTorchJob/MPIJob's conditions -> status. The newest condition with
    ``status: "True"`` decides: Created -> scheduled, Running -> running, Restarting -> running
    (reason Restarting), Succeeded -> succeeded, Failed -> failed, Suspended -> warning."""
    meta = job.get("metadata") or {}
    conditions = [c for c in (job.get("status") or {}).get("conditions") or [] if c.get("status") == "True"]
    by_type = {c.get("type"): c for c in conditions}
    for terminal, status in (("Succeeded", S.SUCCEEDED), ("Failed", S.FAILED)):
        cond = by_type.get(terminal)
        if cond is not None:
            return Observation(status, reason=cond.get("reason"), message=_clip(cond.get("message")))
    if meta.get("deletionTimestamp"):
        return Observation(GONE, reason="JobDeleted", message="the job was deleted before it finished")
    if not conditions:
        return Observation(S.SCHEDULED)
    latest = max(conditions, key=lambda c: (parse_time(c.get("lastTransitionTime")) or 0.0,
                                            conditions.index(c)))
    mapping = {"Created": S.SCHEDULED, "Running": S.RUNNING, "Restarting": S.RUNNING, "Suspended": S.WARNING}
    status = mapping.get(latest.get("type"), S.UNKNOWN)
    reason = latest.get("reason") if status != S.SCHEDULED else None
    return Observation(status, reason=reason, message=_clip(latest.get("message")) if status != S.SCHEDULED else None)

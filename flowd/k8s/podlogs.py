"""Logs of a run's pods through the Kubernetes pod log API (``flowd logs RUN OP --k8s``).

The pod is found by the identity labels the executor puts on it (run, op, attempt); without an
attempt, the highest one. The main container's log is read (``flowd.io/main-container``
annotation, else the pod's only or first container).
"""

from __future__ import annotations

from typing import Any, TextIO

from flowd.k8s import naming as N
from flowd.k8s.client import ApiError, Kube, load_client

__all__ = ["PodLogError", "find_pod", "print_pod_logs"]


class PodLogError(Exception):
    pass


async def find_pod(kube: Kube, *, namespace: str, run_id: str, path: str, attempt: int | None) -> dict[str, Any]:
    labels = {N.L_RUN: N.label_value(run_id), N.L_OP: N.label_value(path)}
    if attempt is not None:
        labels[N.L_ATTEMPT] = str(attempt)
    found = await kube.request("GET", f"/api/v1/namespaces/{namespace}/pods", query={"labelSelector": N.selector(labels)})
    pods = [p for p in found.get("items", []) if (p["metadata"].get("annotations") or {}).get(N.A_OP_PATH) == path]
    if not pods:
        raise PodLogError(f"no pod of run {run_id} op {path!r}" + (f" attempt {attempt}" if attempt else "")
                          + f" in namespace {namespace!r} (finished pods may have been deleted by their TTL)")
    return max(pods, key=lambda p: int((p["metadata"].get("annotations") or {}).get(N.A_ATTEMPT, "0")))


async def print_pod_logs(*, kubeconfig: str | None, namespace: str, run_id: str, path: str, attempt: int | None,
                         follow: bool, out: TextIO) -> None:
    try:
        api = await load_client(kubeconfig=kubeconfig, pool_size=2)
    except Exception as exc:  # a missing or bad kubeconfig: say so in one line
        raise PodLogError(f"cannot load the kubeconfig: {' '.join(str(exc).split())}") from exc
    kube = Kube(api, pool_size=2)
    try:
        pod = await find_pod(kube, namespace=namespace, run_id=run_id, path=path, attempt=attempt)
        name = pod["metadata"]["name"]
        containers = [c["name"] for c in pod["spec"].get("containers", [])]
        main = (pod["metadata"].get("annotations") or {}).get(N.A_MAIN) or (containers[0] if containers else "")
        query: dict[str, Any] = {"container": main}
        if follow:
            query["follow"] = "true"
            resp = await kube._call("GET", f"/api/v1/namespaces/{namespace}/pods/{name}/log", query=query, body=None,  # noqa: SLF001
                                    content_type="application/json", timeout=None)
            try:
                if resp.status >= 300:
                    raise PodLogError(f"pod {name}: HTTP {resp.status}: {(await resp.read()).decode(errors='replace')[:300]}")
                async for chunk in resp.content.iter_any():
                    out.write(chunk.decode(errors="replace"))
                    out.flush()
            finally:
                resp.release()
            return
        text = await _get_text(kube, f"/api/v1/namespaces/{namespace}/pods/{name}/log", query)
        out.write(text)
        out.flush()
    except ApiError as exc:
        raise PodLogError(str(exc)) from exc
    finally:
        await kube.close()
        await api.close()


async def _get_text(kube: Kube, path: str, query: dict[str, Any]) -> str:
    resp = await kube._call("GET", path, query=query, body=None, content_type="application/json", timeout=30.0)  # noqa: SLF001
    try:
        data = await resp.read()
    finally:
        resp.release()
    if resp.status >= 300:
        raise PodLogError(f"HTTP {resp.status}: {data.decode(errors='replace')[:300]}")
    return data.decode(errors="replace")

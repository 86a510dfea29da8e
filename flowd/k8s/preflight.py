"""Before ``flowd run --executor k8s`` starts anything: can this kubeconfig reach a cluster that
lets us list pods in the namespace? One bounded round trip, so a missing or bad kubeconfig or an
unreachable API server ends the command with one line within seconds, instead of an op waiting
in ``queued`` while the watches retry forever (the daemon keeps retrying on purpose: a cluster
may come back; a command a person is waiting on should not).
"""

from __future__ import annotations

import logging
import os
from typing import Any

import anyio

from flowd.k8s.config import Settings

__all__ = ["ClusterUnavailable", "check_cluster"]


class ClusterUnavailable(Exception):
    """The cluster cannot be used; the message is one line that says why and what to check."""


def _where(settings: Settings) -> str:
    return f"kubeconfig {settings.kubeconfig}" if settings.kubeconfig else "the default kubeconfig ($KUBECONFIG, ~/.kube/config, in-cluster)"


async def check_cluster(settings: Settings, *, timeout: float = 5.0) -> None:
    """Raise :class:`ClusterUnavailable` unless the API server answers a pod list in the
    settings' namespace within ``timeout`` seconds."""
    if settings.kubeconfig and not os.path.isfile(settings.kubeconfig):
        raise ClusterUnavailable(f"no kubeconfig: {settings.kubeconfig} is not a file")
    in_cluster = bool(os.environ.get("KUBERNETES_SERVICE_HOST"))
    default = os.path.expanduser(os.environ.get("KUBECONFIG", "~/.kube/config").split(os.pathsep)[0])
    if not settings.kubeconfig and not in_cluster and not os.path.isfile(default):
        raise ClusterUnavailable(
            f"no kubeconfig: {default} does not exist and this is not a pod in a cluster "
            "(set --kubeconfig FILE or $KUBECONFIG)"
        )
    # imported only now: kubernetes_asyncio takes seconds of CPU to import, the checks above none
    from flowd.k8s.client import ApiError, Kube, load_client

    # the library logs a warning of its own for a missing file; the message below says it all
    logging.getLogger("kubernetes_asyncio.config.kube_config").setLevel(logging.ERROR)
    try:
        api: Any = await load_client(kubeconfig=settings.kubeconfig, context=settings.context, pool_size=2)
    except FileNotFoundError as exc:
        raise ClusterUnavailable(f"no kubeconfig: {exc.filename or exc} does not exist") from exc
    except Exception as exc:  # ConfigException, YAML errors, bad certificates: all say the file is wrong
        text = " ".join(str(exc).split()) or type(exc).__name__
        raise ClusterUnavailable(f"cannot load {_where(settings)}: not a usable kubeconfig ({text})") from exc
    kube = Kube(api, pool_size=2)
    host = api.configuration.host
    try:
        with anyio.fail_after(timeout):
            await kube.request("GET", f"/api/v1/namespaces/{settings.namespace}/pods", query={"limit": 1},
                               timeout=timeout)
    except TimeoutError as exc:
        raise ClusterUnavailable(f"the Kubernetes API server {host} did not answer within {timeout:g}s") from exc
    except ApiError as exc:
        if exc.status == 0:
            raise ClusterUnavailable(f"cannot reach the Kubernetes API server {host}: {exc.message}") from exc
        raise ClusterUnavailable(
            f"the Kubernetes API server {host} refused to list pods in namespace {settings.namespace!r}: {exc}"
        ) from exc
    finally:
        with anyio.CancelScope(shield=True):
            await kube.close()
            await api.close()

"""A thin JSON client over kubernetes_asyncio's transport (auth, TLS, token refresh).

flowd reads and writes plain dicts in the API's JSON shape: its conversion and status
functions are tested on recorded JSON, and decoding watch streams into generated model classes
would cost more CPU than everything else flowd does per pod. So this module uses only
kubernetes_asyncio's configuration and credentials (``update_params_for_auth``, which refreshes
tokens), its own aiohttp session, and encodes/decodes with msgspec.

Errors: every failure leaves as :class:`ApiError` (HTTP status, the apiserver's ``reason`` and
message) with a ``retriable`` flag, chained to the library's exception. Nothing above this
module sees aiohttp errors.
"""

from __future__ import annotations

import ssl
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import msgspec
from kubernetes_asyncio import client as k8s_client
from kubernetes_asyncio import config as k8s_config

__all__ = ["ApiError", "Kube", "load_client"]

_decode = msgspec.json.Decoder().decode
_encode = msgspec.json.Encoder().encode

PATCH_MERGE = "application/merge-patch+json"
PATCH_STRATEGIC = "application/strategic-merge-patch+json"
PATCH_JSON = "application/json-patch+json"


class ApiError(Exception):
    """A failed API call. ``status`` 0 means no HTTP answer (connection refused/reset, timeout)."""

    def __init__(self, status: int, reason: str, message: str) -> None:
        super().__init__(f"HTTP {status} {reason}: {message}" if status else f"{reason}: {message}")
        self.status = status
        self.reason = reason
        self.message = message

    @property
    def retriable(self) -> bool:
        return self.status == 0 or self.status == 429 or self.status >= 500

    @property
    def not_found(self) -> bool:
        return self.status == 404

    @property
    def conflict(self) -> bool:
        return self.status == 409

    @property
    def gone(self) -> bool:
        return self.status == 410


def _error(status: int, body: bytes | str) -> ApiError:
    try:
        doc = _decode(body) if body else {}
    except msgspec.DecodeError:
        doc = {}
    if not isinstance(doc, dict):
        doc = {}
    text = body.decode(errors="replace") if isinstance(body, bytes) else str(body)
    return ApiError(status, str(doc.get("reason") or "Error"), str(doc.get("message") or text[:300]))


async def load_client(*, kubeconfig: str | None = None, context: str | None = None,
                      pool_size: int = 256) -> k8s_client.ApiClient:
    """An ApiClient for the kubeconfig (or in-cluster config when running in a pod)."""
    cfg = k8s_client.Configuration()
    try:
        await k8s_config.load_kube_config(config_file=kubeconfig, context=context, client_configuration=cfg)
    except (k8s_config.ConfigException, FileNotFoundError, TypeError):
        if kubeconfig is not None:
            raise
        k8s_config.load_incluster_config(client_configuration=cfg)
    cfg.connection_pool_maxsize = pool_size
    return k8s_client.ApiClient(configuration=cfg)


def _ssl_context(cfg: k8s_client.Configuration) -> ssl.SSLContext:
    """The TLS setup kubernetes_asyncio's RESTClientObject makes from a configuration."""
    ctx = ssl.create_default_context(cafile=cfg.ssl_ca_cert)
    if cfg.cert_file:
        ctx.load_cert_chain(cfg.cert_file, keyfile=cfg.key_file)
    if not cfg.verify_ssl:
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
    if getattr(cfg, "disable_strict_ssl_verification", False):
        ctx.verify_flags &= ~ssl.VERIFY_X509_STRICT
    return ctx


class Kube:
    """``request`` for one call, ``lines`` for a watch stream. Paths are API paths
    (``/api/v1/namespaces/ns/pods``). Make it inside the event loop; ``close()`` when done.

    It has its own aiohttp session, like kubernetes_asyncio's but with ``trust_env=False``:
    with ``trust_env`` aiohttp looks up proxy settings in a worker thread on every request,
    which cost more than the request itself at flowd's rates. An explicit proxy in the
    kubeconfig still applies."""

    def __init__(self, api: k8s_client.ApiClient, *, pool_size: int = 256) -> None:
        self.api = api
        cfg = api.configuration
        self._session = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(limit=pool_size, ssl=_ssl_context(cfg)),
            trust_env=False, read_bufsize=2**21,
        )

    async def close(self) -> None:
        await self._session.close()

    async def _call(self, method: str, path: str, *, query: dict[str, Any] | None, body: Any,
                    content_type: str, timeout: Any) -> aiohttp.ClientResponse:
        # kubernetes_asyncio's own call_api sanitizes every body recursively and encodes it with
        # the json module; at thousands of pods per second that was a visible share of flowd's
        # CPU. So: its auth (token refresh included), our session, msgspec for the body.
        headers = {"Content-Type": content_type, "Accept": "application/json"}
        await self.api.update_params_for_auth(headers, [], ["BearerToken"])
        cfg = self.api.configuration
        if cfg.host is None:  # the config loaders always set it; only a hand-made Configuration lacks it
            raise ApiError(0, "NoHost", "the Kubernetes client configuration has no host")
        params = [(k, v if isinstance(v, str) else str(v).lower() if isinstance(v, bool) else str(v))
                  for k, v in (query or {}).items() if v is not None]
        extra: dict[str, Any] = {}
        if cfg.tls_server_name:
            extra["server_hostname"] = cfg.tls_server_name
        if cfg.proxy:
            extra["proxy"] = cfg.proxy
            if cfg.proxy_headers:
                extra["proxy_headers"] = cfg.proxy_headers
        if not isinstance(timeout, aiohttp.ClientTimeout):
            timeout = aiohttp.ClientTimeout(total=timeout)
        try:
            return await self._session.request(
                method, cfg.host + path, params=params,
                data=body if isinstance(body, bytes) or body is None else _encode(body), headers=headers,
                timeout=timeout, **extra,
            )
        except (TimeoutError, aiohttp.ClientError, OSError) as exc:
            raise ApiError(0, type(exc).__name__, str(exc) or type(exc).__name__) from exc

    async def request(self, method: str, path: str, *, query: dict[str, Any] | None = None, body: Any = None,
                      content_type: str = "application/json", timeout: float = 30.0,
                      decode: bool = True) -> dict[str, Any]:
        """One call; the answer decoded (``decode=False``: read and dropped, ``{}`` returned —
        for a caller that only needs the status, e.g. a create whose object the watch reports).
        ``body``: the JSON-shaped object, or bytes already encoded (sent as they are)."""
        resp = await self._call(method, path, query=query, body=body, content_type=content_type, timeout=timeout)
        try:
            data = await resp.read()
        except (TimeoutError, aiohttp.ClientError, OSError) as exc:
            raise ApiError(0, type(exc).__name__, str(exc) or type(exc).__name__) from exc
        finally:
            resp.release()
        if not 200 <= resp.status < 300:
            raise _error(resp.status, data)
        return _decode(data) if data and decode else {}

    async def text_lines(self, path: str, *, query: dict[str, Any], inactivity: float | None = None,
                         max_line: int = 1 << 16) -> AsyncIterator[bytes]:
        """A streamed text body (a pod's log), one line at a time without its newline; a line
        longer than ``max_line`` bytes is cut there. Ends when the server closes the stream;
        raises ApiError on an error status or when nothing arrives for ``inactivity`` seconds."""
        timeout = aiohttp.ClientTimeout(total=None, sock_connect=10, sock_read=inactivity)
        resp = await self._call("GET", path, query=query, body=None, content_type="application/json", timeout=timeout)
        try:
            if not 200 <= resp.status < 300:
                raise _error(resp.status, await resp.read())
            buf = b""
            while True:
                try:
                    chunk = await resp.content.readany()
                except (TimeoutError, aiohttp.ClientError, OSError) as exc:
                    raise ApiError(0, type(exc).__name__, str(exc) or "log stream broken") from exc
                if not chunk:
                    if buf:
                        yield buf
                    return
                buf += chunk
                *complete, buf = buf.split(b"\n")
                for line in complete:
                    yield line[:max_line]
                if len(buf) > max_line:  # one absurdly long line: cut, keep reading
                    yield buf[:max_line]
                    buf = b""
        finally:
            resp.release()
            resp.close()

    async def lines(self, path: str, *, query: dict[str, Any], inactivity: float) -> AsyncIterator[dict[str, Any]]:
        """A watch: one decoded event per line. Ends when the server closes the stream; raises
        ApiError when nothing (not even a bookmark) arrives for ``inactivity`` seconds."""
        timeout = aiohttp.ClientTimeout(total=None, sock_connect=10, sock_read=inactivity)
        resp = await self._call("GET", path, query={**query, "watch": "true"}, body=None,
                                content_type="application/json", timeout=timeout)
        try:
            if not 200 <= resp.status < 300:
                raise _error(resp.status, await resp.read())
            while True:
                try:
                    line = await resp.content.readline()
                except (TimeoutError, aiohttp.ClientError, OSError) as exc:
                    raise ApiError(0, type(exc).__name__, str(exc) or "watch stream broken") from exc
                if not line:
                    return
                if line.strip():
                    yield _decode(line)
        finally:
            resp.release()
            resp.close()

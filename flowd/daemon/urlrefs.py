"""``urlRef`` in the daemon: off unless allowed, fetched off the partition's critical path.

Whoever can write one record to ``runs`` chooses the URLs a submission references, and the
daemon fetches them from inside the cluster: cloud metadata endpoints (169.254.169.254),
loopback services and the private network would all be reachable. So:

* **Off unless configured.** ``url_ref_allow`` lists URL prefixes (``https://hub.example.com/``);
  an empty list (the default) refuses every urlRef. A URL matches a prefix when scheme, host and
  port are equal and its path starts with the prefix's path at a ``/`` boundary.
* **Checked on the resolved address.** The host name is resolved once; every address it
  resolves to must be public (not loopback, link-local, private, shared, multicast, reserved or
  unspecified) unless the matching prefix names that very IP address, or the address is in
  ``url_ref_allow_networks``. The connection then goes to that exact checked address (the
  ``Host`` header and TLS server name stay the name), so DNS cannot answer differently between
  the check and the connect. Redirects are followed (at most 3), each target checked the same way.
* **Bounded.** ``url_ref_timeout`` per network step and ``2 ×`` that for a whole document,
  ``url_ref_max_bytes`` per document, ``url_ref_max_documents`` per submission,
  ``url_ref_concurrency`` fetches at once in the whole daemon.
* **Off the critical path, and deterministic.** The partition's step stays pure: compiling a
  submission whose urlRefs are not fetched yet raises :class:`FetchNeeded`; the partition records
  the run as *fetching* (in its snapshot) and the daemon fetches in a worker thread, then
  publishes the same submission again to the same ``runs`` partition with ``url_documents``
  (and ``url_errors``) filled in. That record compiles without any I/O, so a replay gives the
  same result. A daemon that dies mid-fetch leaves the run in the snapshot's *fetching* set and
  the next owner fetches again; a duplicate result is ignored (one run per run id).
* **Nothing fetched is echoed.** Diagnostics located in a fetched document are dropped (the
  referencing op says that the component is invalid and how many errors it has), and words in
  backquotes that appear in a fetched document but not in the submitted text are masked.

``pathRef`` is never resolved in the daemon (there is no base folder; it would read the daemon's
own files).
"""

from __future__ import annotations

import http.client
import ipaddress
import re
import socket
import ssl
import time
import urllib.parse
from collections.abc import Callable
from typing import Any

import msgspec

from flowd.daemon import wire
from flowd.spec.refs import Located, RefError

__all__ = [
    "FetchNeeded",
    "SubmissionDocuments",
    "UrlPolicy",
    "fetch_document",
    "matching_prefix",
    "redact",
    "resolve_submission",
]

MAX_REDIRECTS = 3


class UrlPolicy(msgspec.Struct, frozen=True, kw_only=True):
    allow: list[str] = []
    allow_networks: list[str] = []
    timeout: float = 10.0
    max_bytes: int = 1024 * 1024
    max_documents: int = 16
    concurrency: int = 4

    @property
    def enabled(self) -> bool:
        return bool(self.allow)


class FetchNeeded(Exception):
    """The submission references URLs the daemon has not fetched yet."""

    def __init__(self, urls: list[str]) -> None:
        super().__init__(", ".join(urls))
        self.urls = urls


def _split(url: str) -> tuple[str, str, int, str] | None:
    try:
        parts = urllib.parse.urlsplit(url)
        port = parts.port
    except ValueError:
        return None
    if parts.scheme not in ("http", "https") or not parts.hostname or parts.username or parts.password:
        return None
    return parts.scheme, parts.hostname.lower(), port or (443 if parts.scheme == "https" else 80), parts.path or "/"


def matching_prefix(url: str, allow: list[str]) -> str | None:
    """The allowlist entry ``url`` falls under, or None (pure: no resolution)."""
    target = _split(url)
    if target is None:
        return None
    for prefix in allow:
        p = _split(prefix)
        if p is None or p[:3] != target[:3]:
            continue
        base = p[3]
        if target[3] == base or target[3].startswith(base if base.endswith("/") else base + "/"):
            return prefix
    return None


def _address_refusal(ip: str, prefix: str, policy: UrlPolicy) -> str | None:
    addr = ipaddress.ip_address(ip.split("%", 1)[0])
    if isinstance(addr, ipaddress.IPv6Address) and addr.ipv4_mapped is not None:
        addr = addr.ipv4_mapped
    named = _split(prefix)
    if named is not None:
        try:
            if ipaddress.ip_address(named[1].strip("[]")) == addr:
                return None  # the prefix names this very address
        except ValueError:
            pass
    if any(addr in ipaddress.ip_network(n, strict=False) for n in policy.allow_networks):
        return None
    for kind in ("unspecified", "loopback", "link_local", "multicast", "private", "reserved"):
        if getattr(addr, f"is_{kind}"):
            return f"{kind.replace('_', '-')} address {addr}"
    if not addr.is_global:
        return f"non-public address {addr}"
    return None


class _PinnedConnection(http.client.HTTPConnection):
    """HTTP(S) to one checked IP address; Host header and TLS server name stay the URL's host."""

    def __init__(self, host: str, port: int, ip: str, *, timeout: float, tls: ssl.SSLContext | None) -> None:
        super().__init__(host, port, timeout=timeout)
        self._ip = ip
        self._tls = tls

    def connect(self) -> None:
        sock = socket.create_connection((self._ip, self.port), self.timeout)
        self.sock = self._tls.wrap_socket(sock, server_hostname=self.host) if self._tls else sock


def _resolve(host: str, port: int) -> list[str]:
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except socket.gaierror as exc:
        raise RefError(f"cannot resolve {host}: {exc.strerror or exc}") from None
    return list(dict.fromkeys(str(info[4][0]) for info in infos))


def fetch_document(url: str, policy: UrlPolicy) -> str:
    """GET ``url`` under ``policy`` (allowlist, resolved-address check, redirects re-checked,
    size and time limits). Raises :class:`RefError` with a message that names the limit."""
    deadline = time.monotonic() + 2 * policy.timeout
    for _ in range(MAX_REDIRECTS + 1):
        prefix = matching_prefix(url, policy.allow)
        if prefix is None:
            raise RefError(f"urlRef `{url}` is not allowed: it matches no prefix of the daemon's url_ref_allow")
        scheme, host, port, _path = _split(url)  # type: ignore[misc]
        addresses = _resolve(host, port)
        for ip in addresses:
            refusal = _address_refusal(ip, prefix, policy)
            if refusal is not None:
                raise RefError(f"urlRef `{url}` is refused: {host} resolves to a {refusal} (allowed only when a "
                               "url_ref_allow prefix names that address or url_ref_allow_networks holds it)")
        parts = urllib.parse.urlsplit(url)
        target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        tls = ssl.create_default_context() if scheme == "https" else None
        conn = _PinnedConnection(host, port, addresses[0], timeout=policy.timeout, tls=tls)
        try:
            conn.request("GET", target, headers={"Accept": "application/yaml, application/json, text/plain, */*",
                                                 "User-Agent": "flowd"})
            response = conn.getresponse()
            if response.status in (301, 302, 303, 307, 308):
                location = response.getheader("Location")
                if not location:
                    raise RefError(f"urlRef `{url}`: HTTP {response.status} without a Location")
                url = urllib.parse.urljoin(url, location)
                continue
            if response.status != 200:
                raise RefError(f"urlRef `{url}` could not be fetched: HTTP {response.status} {response.reason}")
            length = response.getheader("Content-Length")
            too_big = f"urlRef `{url}`: the document is larger than url_ref_max_bytes ({policy.max_bytes} bytes)"
            if length and length.isdigit() and int(length) > policy.max_bytes:
                raise RefError(too_big)
            body = b""
            while len(body) <= policy.max_bytes:
                if time.monotonic() > deadline:
                    raise RefError(f"urlRef `{url}`: the download took longer than 2 × url_ref_timeout "
                                   f"({2 * policy.timeout:g} s)")
                chunk = response.read(min(65536, policy.max_bytes + 1 - len(body)))
                if not chunk:
                    break
                body += chunk
            if len(body) > policy.max_bytes:
                raise RefError(too_big)
        except (OSError, http.client.HTTPException) as exc:
            what = "timed out" if isinstance(exc, TimeoutError) else f"{type(exc).__name__}: {exc}"
            raise RefError(f"urlRef `{url}` could not be fetched: {what} (url_ref_timeout {policy.timeout:g} s)") from None
        finally:
            conn.close()
        try:
            return body.decode("utf-8")
        except UnicodeDecodeError:
            raise RefError(f"urlRef `{url}`: the document is not UTF-8 text") from None
    raise RefError(f"urlRef `{url}`: more than {MAX_REDIRECTS} redirects")


class SubmissionDocuments:
    """The daemon's ``url_fetcher``: reads urlRefs only from what was fetched beforehand
    (``Submission.url_documents``/``url_errors``) and never does I/O itself. A URL the policy
    allows but nobody fetched yet is collected in ``missing`` (and stops the compilation when
    ``stop_on_missing``)."""

    def __init__(self, msg: wire.Submission, policy: UrlPolicy, *, stop_on_missing: bool = True) -> None:
        self.documents = dict(msg.url_documents)
        self.errors = dict(msg.url_errors)
        self.policy = policy
        self.stop_on_missing = stop_on_missing
        self.missing: list[str] = []

    def __call__(self, url: str) -> Located:
        if url in self.documents:
            return Located(url, f"url:{url}", self.documents[url], None)
        if url in self.errors:
            raise RefError(self.errors[url])
        if not self.policy.enabled:
            raise RefError(f"urlRef `{url}` is not resolved by the daemon: urlRef is off unless the daemon's "
                           "url_ref_allow lists URL prefixes it may fetch")
        if matching_prefix(url, self.policy.allow) is None:
            raise RefError(f"urlRef `{url}` is not allowed: it matches no prefix of the daemon's url_ref_allow")
        if url not in self.missing:
            self.missing.append(url)
        if self.stop_on_missing:
            raise FetchNeeded(self.missing)
        raise RefError(f"urlRef `{url}` was not fetched")


def resolve_submission(msg: wire.Submission, policy: UrlPolicy,
                       compile_with: Callable[[wire.Submission, SubmissionDocuments], Any]) -> wire.Submission:
    """Fetch every urlRef of ``msg`` (nested ones too: compile, fetch what is missing, repeat),
    at most ``max_documents``; returns ``msg`` with ``url_documents``/``url_errors`` filled in.
    Blocking: run it in a worker thread."""
    documents: dict[str, str] = dict(msg.url_documents)
    errors: dict[str, str] = dict(msg.url_errors)
    while True:
        current = msgspec.structs.replace(msg, url_documents=documents, url_errors=errors)
        fetcher = SubmissionDocuments(current, policy, stop_on_missing=False)
        compile_with(current, fetcher)
        if not fetcher.missing:
            return current
        for url in fetcher.missing:
            if len(documents) + len(errors) >= policy.max_documents:
                errors[url] = (f"urlRef `{url}` is not fetched: the submission references more than "
                               f"url_ref_max_documents ({policy.max_documents}) documents")
                continue
            try:
                documents[url] = fetch_document(url, policy)
            except RefError as exc:
                errors[url] = str(exc)


_QUOTED = re.compile(r"`([^`]*)`")


def redact(diagnostics: list[wire.Diagnostic], msg: wire.Submission) -> list[wire.Diagnostic]:
    """Drop what is located in fetched documents and mask words only they contain."""
    if not msg.url_documents:
        return diagnostics
    own = msg.spec or ""
    fetched = list(msg.url_documents.values())
    kept = []
    for d in diagnostics:
        if d.path in msg.url_documents:
            continue

        def mask(m: re.Match[str]) -> str:
            word = m.group(1)
            if word in own or word in msg.url_documents or not any(word in text for text in fetched):
                return m.group(0)
            return "`…`"

        kept.append(msgspec.structs.replace(d, message=_QUOTED.sub(mask, d.message)))
    return kept

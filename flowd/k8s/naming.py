"""Names, labels and annotations of the Kubernetes objects flowd creates (pure functions).

A pod name is derived from (run id, op path, attempt) and nothing else, so a replayed
``StartOp`` (after a daemon restart or a Kafka redelivery) names the same pod and the create
is answered by ``AlreadyExists``, which the executor adopts. The name is a DNS-1123 label
(≤ 63 chars, lowercase alphanumerics and ``-``, alphanumeric at both ends): a readable prefix
made of slugs of the run id and the op path, the attempt, and a hash of the exact identity.
Slugs lose information (case, ``/``, ``[]``, truncation); the hash does not, so two different
identities never share a name in practice (60 bits of SHA-256).

Label values are limited to 63 chars of ``[A-Za-z0-9_.-]``; a value that does not fit is
replaced by a slug plus a hash. The exact identity always travels in annotations.
"""

from __future__ import annotations

import base64
import functools
import hashlib
import re

__all__ = [
    "DOMAIN", "MANAGED_BY", "FINALIZER", "L_MANAGED_BY", "L_RUN", "L_OP", "L_ATTEMPT", "L_PARTITION",
    "L_KIND", "L_POD", "A_RUN_ID", "A_OP_PATH", "A_ATTEMPT", "A_KEY", "A_TTL", "A_MAIN",
    "pod_name", "label_value", "identity_hash", "selector",
]

DOMAIN = "flowd.io"
MANAGED_BY = "flowd"
FINALIZER = f"{DOMAIN}/report"

L_MANAGED_BY = "app.kubernetes.io/managed-by"
L_RUN = f"{DOMAIN}/run"
L_OP = f"{DOMAIN}/op"
L_ATTEMPT = f"{DOMAIN}/attempt"
L_PARTITION = f"{DOMAIN}/partition"
L_KIND = f"{DOMAIN}/kind"
# the pod's own name as a label: a service's selector and a CR's replica pods use it
L_POD = f"{DOMAIN}/pod"

A_RUN_ID = f"{DOMAIN}/run-id"
A_OP_PATH = f"{DOMAIN}/op-path"
A_ATTEMPT = f"{DOMAIN}/attempt"
A_KEY = f"{DOMAIN}/key"
A_TTL = f"{DOMAIN}/ttl"
A_MAIN = f"{DOMAIN}/main-container"

# the prefix of a log line that reports an intermediate metric point (flowd.k8s.metriclogs)
METRICS_PREFIX = "FLOWD_METRIC "

MAX_NAME = 63
_HASH_LEN = 12  # base32 chars: 60 bits
_NOT_DNS = re.compile(r"[^a-z0-9]+")
_LABEL_OK = re.compile(r"^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$")


_B32 = "abcdefghijklmnopqrstuvwxyz234567"  # base64.b32encode's alphabet, lowercase
_DIGEST_BITS = 256


def identity_hash(*parts: str | int, length: int = _HASH_LEN) -> str:
    """A lowercase base32 digest of the parts (NUL-separated, so ("a/b","c") != ("a","b/c")):
    the first ``length`` characters of ``base64.b32encode(sha256)``, which names pods, so it
    must never change. Taken from the digest's top bits directly: b32encode is a Python loop
    over the whole digest and was a visible share of a pod's CPU."""
    digest = hashlib.sha256("\0".join(str(p) for p in parts).encode()).digest()
    if length * 5 > _DIGEST_BITS - 16:  # beyond the whole 5-byte groups: the padded tail
        return base64.b32encode(digest).decode().lower()[:length]
    top = int.from_bytes(digest, "big") >> (_DIGEST_BITS - 5 * length)
    return "".join(_B32[(top >> shift) & 31] for shift in range(5 * (length - 1), -1, -5))


def _slug(text: str, limit: int) -> str:
    return _NOT_DNS.sub("-", text.lower()).strip("-")[:limit].strip("-")


@functools.lru_cache(maxsize=4096)
def pod_name(run_id: str, path: str, attempt: int) -> str:
    """``<run>-<op>-<attempt>-<hash>``, at most 63 chars, deterministic and DNS-safe.

    Pure, so cached: the executor names an attempt's pod when it takes the start and again
    when it builds the manifest (and the bench profile showed the SHA-256 + base32 of each)."""
    suffix = f"{attempt}-{identity_hash(run_id, path, attempt)}"
    room = MAX_NAME - len(suffix) - 1
    run = _slug(run_id, 20)
    op = _slug(path.replace("/", "."), max(0, room - len(run) - 1))
    head = "-".join(p for p in (run, op) if p)[:room].strip("-")
    name = f"{head}-{suffix}" if head else f"f-{suffix}"
    return name


def label_value(text: str) -> str:
    """``text`` itself if it is a valid label value, else ``<slug>-<hash>`` (≤ 63 chars)."""
    if len(text) <= MAX_NAME and _LABEL_OK.match(text):
        return text
    h = identity_hash(text, length=10)
    slug = _slug(text, MAX_NAME - len(h) - 1)
    return f"{slug}-{h}" if slug else h


def selector(labels: dict[str, str]) -> str:
    return ",".join(f"{k}={v}" for k, v in labels.items())

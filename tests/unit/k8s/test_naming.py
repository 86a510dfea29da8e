"""Pod names and label values: deterministic, DNS-safe, short, collision-free."""

from __future__ import annotations

import re

import pytest

from flowd.k8s import naming as N

DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
LABEL_VALUE = re.compile(r"^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$")


@pytest.mark.parametrize(
    ("run_id", "path", "attempt"),
    [
        pytest.param("r1", "train", 1, id="plain"),
        pytest.param("Run_ID.With/Odd:Chars", "outer/inner", 3, id="odd-chars"),
        pytest.param("x" * 200, "y" * 300, 12345, id="very-long"),
        pytest.param("0123", "sweep[3]/inner", 1, id="matrix-path"),
        pytest.param("---", "///", 1, id="nothing-left-after-slugging"),
        pytest.param("ÄÖÜ", "é", 2, id="non-ascii"),
    ],
)
def test_pod_name_is_a_dns_label(run_id: str, path: str, attempt: int) -> None:
    name = N.pod_name(run_id, path, attempt)
    assert len(name) <= 63
    assert DNS_LABEL.match(name), name
    assert N.pod_name(run_id, path, attempt) == name  # deterministic


def test_pod_name_is_readable() -> None:
    name = N.pod_name("my-run", "outer/train", 2)
    assert name.startswith("my-run-outer-train-2-")


def test_slug_collisions_are_told_apart_by_the_hash() -> None:
    # all three slug to the same readable prefix
    names = {N.pod_name("r", p, 1) for p in ("a/b", "a.b", "A_B")}
    assert len(names) == 3
    assert N.pod_name("r", "a", 1) != N.pod_name("r", "a", 2)
    assert N.pod_name("a/b", "c", 1) != N.pod_name("a", "b/c", 1)


def test_many_names_are_unique() -> None:
    names = {N.pod_name("run", f"fan[{i}]", 1) for i in range(20000)}
    assert len(names) == 20000


@pytest.mark.parametrize("text", ["train", "a" * 63, "a" * 64, "outer/inner", "-x-", "sweep[3]", ""])
def test_label_value(text: str) -> None:
    value = N.label_value(text)
    assert len(value) <= 63 and LABEL_VALUE.match(value), value
    if len(text) <= 63 and LABEL_VALUE.match(text):
        assert value == text
    assert N.label_value(text) == value


def test_identity_hash_is_base32_of_the_sha256_prefix() -> None:
    """Pod names are derived from it and pods of earlier releases are adopted by name: the
    shortcut from the digest's top bits must give exactly what base64.b32encode gave."""
    import base64
    import hashlib
    import random

    rng = random.Random(7)
    for _ in range(2000):
        parts = ["".join(rng.choice("aZ0/-_#.é") for _ in range(rng.randint(0, 40))) for _ in range(rng.randint(1, 3))]
        length = rng.randint(1, 52)
        digest = hashlib.sha256("\0".join(parts).encode()).digest()
        assert N.identity_hash(*parts, length=length) == base64.b32encode(digest).decode().lower()[:length]

"""When an op whose upstream ops are finishing may start: the [FLOWD] trigger table of
POLYFLOW §5.4, as a predicate per policy over the op's upstream counters.

Counters: ``n_up`` upstream ops in all, ``n_done`` of them done, ``n_ok`` ok (succeeded, or skipped
when the op does not skip on upstream skip), ``n_bad`` bad (failed or upstream_failed). A stopped
upstream is done but neither ok nor bad. Differences from Polyaxon's backend (deliberate): it
decides the ``one_*`` policies at the first finished upstream, and counts a skipped upstream as
not ok; here a policy waits as long as it can still be satisfied.
"""

from __future__ import annotations

from collections.abc import Callable

START, UPSTREAM_FAILED, WAIT = "start", "upstream_failed", "wait"

# policy -> (start when, upstream_failed when); WAIT otherwise
Rule = Callable[[int, int, int, int], bool]
TABLE: dict[str, tuple[Rule, Rule]] = {
    "all_succeeded": (lambda up, done, ok, bad: done >= up and ok == up,
                      lambda up, done, ok, bad: done >= up and ok < up),
    "all_failed": (lambda up, done, ok, bad: done >= up and bad == up,
                   lambda up, done, ok, bad: done >= up and bad < up),
    "all_done": (lambda up, done, ok, bad: done >= up,
                 lambda up, done, ok, bad: False),
    "one_succeeded": (lambda up, done, ok, bad: ok > 0,
                      lambda up, done, ok, bad: done >= up and ok == 0),
    "one_failed": (lambda up, done, ok, bad: bad > 0,
                   lambda up, done, ok, bad: done >= up and bad == 0),
    "one_done": (lambda up, done, ok, bad: done > 0,
                 lambda up, done, ok, bad: False),
}


def decide(policy: str, n_up: int, n_done: int, n_ok: int, n_bad: int) -> str:
    try:
        start, fail = TABLE[policy]
    except KeyError:
        raise ValueError(f"unknown trigger policy {policy!r}") from None
    if start(n_up, n_done, n_ok, n_bad):
        return START
    if fail(n_up, n_done, n_ok, n_bad):
        return UPSTREAM_FAILED
    return WAIT

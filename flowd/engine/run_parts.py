"""One run's state in parts, and the attempts in flight derived from it (daemon snapshots).

The daemon snapshots a partition run by run, rewriting only the runs that changed, and does not
store the ``StartOp`` of an attempt in flight when the engine state gives it again
(docs/daemon.md, "Snapshots"). ``Engine.snapshot_run`` / ``restore_run`` / ``in_flight_keys``
/ ``in_flight`` call these functions.
"""

from __future__ import annotations

from collections.abc import Container, Iterator, Sequence

import msgspec

from flowd.engine import status as S
from flowd.engine.fields import renders, resolver
from flowd.engine.index import Index
from flowd.engine.messages import StartOp
from flowd.engine.ops import start_op
from flowd.engine.pipeline_codec import decode_run_head
from flowd.engine.state import PIPELINE_KINDS, SNAPSHOT_VERSION, Node, RunState, attempt_key
from flowd.engine.to_init import init_steps, with_init_steps
from flowd.spec.compiled import Component, Op

_encoder = msgspec.msgpack.Encoder()
_nodes_decoder = msgspec.msgpack.Decoder(list[Node])
# stands in for a pipeline left out of a run's parts (the caller stores it once for many runs)
_NO_PIPELINE = Op(name="", component=Component(kind="job"))


def snapshot_run(run: RunState, nodes_per_part: int, *, without_pipeline: bool = False) -> Iterator[bytes]:
    """The run without its nodes (and without its compiled pipeline if ``without_pipeline``),
    then its nodes in insertion order, ``nodes_per_part`` at a time."""
    head = msgspec.structs.replace(run, nodes={}, pipeline=_NO_PIPELINE) if without_pipeline \
        else msgspec.structs.replace(run, nodes={})
    yield _encoder.encode((SNAPSHOT_VERSION, head))
    nodes = list(run.nodes.values())
    for i in range(0, len(nodes), nodes_per_part):
        yield _encoder.encode(nodes[i:i + nodes_per_part])


def restore_run(parts: Sequence[bytes | memoryview], pipeline: Op | None = None) -> RunState:
    version, run = decode_run_head(parts[0], pipeline)
    if version != SNAPSHOT_VERSION:
        raise ValueError(f"snapshot version {version} is not supported (expected {SNAPSHOT_VERSION})")
    nodes = run.nodes
    for part in parts[1:]:
        for node in _nodes_decoder.decode(part):
            nodes[node.path] = node
    return run


def _derivable(run: RunState, index: Index, node: Node, spec: Op) -> bool:
    """The StartOp of an attempt of ``spec`` is a function of the spec and the node's params:
    nothing was rendered (``globals`` such as ``status`` move on after dispatch)."""
    term = spec.termination
    if isinstance(term.max_retries, str) or isinstance(term.timeout, str) or isinstance(term.ttl, str):
        return False
    return not renders(run, index, node, spec)


def _in_flight_nodes(run: RunState, index: Index) -> Iterator[tuple[Node, Op]]:
    specs = index.specs
    for node in run.nodes.values():
        if not node.attempt or node.status not in S.IN_FLIGHT or node.kind in PIPELINE_KINDS:
            continue
        spec = specs[node.path]
        if _derivable(run, index, node, spec):
            yield node, spec


def in_flight_keys(run: RunState, index: Index) -> list[str]:
    return [attempt_key(run, node) for node, _ in _in_flight_nodes(run, index)]


def in_flight(run: RunState, index: Index, skip: Container[str]) -> list[StartOp]:
    out: list[StartOp] = []
    for node, spec in _in_flight_nodes(run, index):
        if attempt_key(run, node) in skip:
            continue
        params = node.params or {}
        env = resolver(run, index, node).env(params) if params else {}
        # the body dispatch built: the component's runtime plus the toInit steps (valid, or the
        # attempt would never have started)
        body = with_init_steps(spec.component.run, init_steps(spec, params))
        out.append(start_op(run, node, spec, params, body, env, spec.termination))
    return out

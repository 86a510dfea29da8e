"""Decoding a compiled pipeline from a snapshot so that equal parts are one object again.

A pipeline shares its specs (every instance of a nested DAG has the very same body), but its
msgpack encoding writes each shared part out again where it occurs, and a plain decode builds a
copy of each occurrence: a 1,000 x 1,000 nested pipeline came back as a million op specs
(~2 KB each) instead of 2,000. Here each component (and each op) is decoded once per distinct
encoding and shared wherever those bytes occur. The bytes are the snapshot's own: the format
is unchanged, and the result equals a plain decode.
"""

from __future__ import annotations

import hashlib
from typing import Any

import msgspec

from flowd.engine.state import RunState, Snapshot
from flowd.spec.compiled import Component, Dag, Op


def _shallow(cls: type[msgspec.Struct], name: str, **types: Any) -> Any:
    """A struct of ``cls``'s fields (and encoding) with the fields in ``types`` decoded as given."""
    fields = []
    for f in msgspec.structs.fields(cls):
        default: Any = f.default if f.default is not msgspec.NODEFAULT else (
            msgspec.field(default_factory=f.default_factory) if f.default_factory is not msgspec.NODEFAULT
            else msgspec.NODEFAULT)
        kind = types.get(f.name, f.type)
        fields.append((f.name, kind) if default is msgspec.NODEFAULT else (f.name, kind, default))
    return msgspec.defstruct(name, fields, omit_defaults=True, forbid_unknown_fields=False)


_ShallowOp = _shallow(Op, "_ShallowOp", component=msgspec.Raw)
_ShallowDag = _shallow(Dag, "_ShallowDag", ops=list[msgspec.Raw])
_ShallowComponent = _shallow(Component, "_ShallowComponent", dag=_ShallowDag | None)

_op_decoder = msgspec.msgpack.Decoder(_ShallowOp)
_component_decoder = msgspec.msgpack.Decoder(_ShallowComponent)


class PipelineDecoder:
    """Decodes pipelines (``decode``), sharing equal parts within and across the pipelines it
    decodes (a partition's runs often run the same pipeline)."""

    def __init__(self) -> None:
        self._ops: dict[bytes, Op] = {}
        self._components: dict[bytes, Component] = {}

    def decode(self, raw: bytes | memoryview | msgspec.Raw) -> Op:
        return self._op(raw)

    @staticmethod
    def _key(raw: Any) -> bytes:
        view = memoryview(raw)
        # small encodings are their own key; a large one (a whole nested body) its digest
        return bytes(view) if view.nbytes <= 256 else hashlib.sha256(view).digest()

    def _op(self, raw: Any) -> Op:
        key = self._key(raw)
        op = self._ops.get(key)
        if op is None:
            shallow = _op_decoder.decode(raw)
            values = msgspec.structs.asdict(shallow)
            values["component"] = self._component(shallow.component)
            op = self._ops[key] = Op(**values)
        return op

    def _component(self, raw: Any) -> Component:
        key = self._key(raw)
        component = self._components.get(key)
        if component is None:
            shallow = _component_decoder.decode(raw)
            values = msgspec.structs.asdict(shallow)
            if shallow.dag is not None:
                dag = msgspec.structs.asdict(shallow.dag)
                dag["ops"] = [self._op(op) for op in shallow.dag.ops]
                values["dag"] = Dag(**dag)
            component = self._components[key] = Component(**values)
        return component


_ShallowRun: Any = _shallow(RunState, "_ShallowRun", pipeline=msgspec.Raw)
_ShallowSnapshot: Any = msgspec.defstruct("_ShallowSnapshot", [("version", int), ("runs", list[_ShallowRun])],
                                          omit_defaults=True)
_snapshot_decoder: Any = msgspec.msgpack.Decoder(_ShallowSnapshot)
_head_decoder: Any = msgspec.msgpack.Decoder(tuple[int, _ShallowRun])


def _run(shallow: Any, decoder: PipelineDecoder, pipeline: Op | None = None) -> RunState:
    values = msgspec.structs.asdict(shallow)
    values["pipeline"] = pipeline if pipeline is not None else decoder.decode(shallow.pipeline)
    return RunState(**values)


def decode_snapshot(data: bytes | memoryview) -> Snapshot:
    """``msgspec.msgpack.decode(data, type=Snapshot)``, with each run's pipeline decoded by one
    :class:`PipelineDecoder` (equal parts shared, also across runs)."""
    shallow = _snapshot_decoder.decode(data)
    decoder = PipelineDecoder()
    return Snapshot(version=shallow.version, runs=[_run(run, decoder) for run in shallow.runs])


def decode_run_head(data: bytes | memoryview, pipeline: Op | None = None) -> tuple[int, RunState]:
    """The head part of ``run_parts.snapshot_run`` (version, the run without its nodes); its
    pipeline is ``pipeline`` when given (it was left out), else decoded sharing equal parts."""
    version, shallow = _head_decoder.decode(data)
    return version, _run(shallow, PipelineDecoder(), pipeline)

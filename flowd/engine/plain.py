"""What a whole compiled pipeline has or lacks, found once per run instead of once per op: no
template anywhere (then no op of the run renders anything at dispatch), and whether any param
or IO asks for ``toEnv`` or ``toInit`` (then every op's env is empty and its body gets no init
steps). A pipeline shares specs (every instance of a nested DAG has the same body): each
distinct op and component is looked at once, so a 1,000 x 1,000 nested pipeline costs what its
2,000 distinct specs cost, not a million."""

from __future__ import annotations

from typing import NamedTuple

import msgspec

from flowd.spec.compiled import Component, Op

_NO_COMPONENT = Component(kind="job")


class PipelineFlags(NamedTuple):
    plain: bool  # no ``{{`` or ``{%`` in any string of the pipeline
    to_env: bool  # some param or IO may have ``toEnv`` (a conservative guess: never a false "no")
    to_init: bool  # likewise ``toInit``


def templated(value: object) -> bool:
    """Does any string in ``value`` (keys included) hold a template? In JSON, ``{{`` and ``{%``
    occur only inside strings (an object's ``{`` is always followed by ``"`` or ``}``)."""
    blob = msgspec.json.encode(value)
    return b"{{" in blob or b"{%" in blob


def pipeline_flags(pipeline: Op) -> PipelineFlags:
    plain, to_env, to_init = True, False, False
    seen_ops: set[int] = set()
    seen_components: set[int] = set()
    stack = [pipeline]
    while stack:
        op = stack.pop()
        if id(op) in seen_ops:
            continue
        seen_ops.add(id(op))
        blobs = [msgspec.json.encode(msgspec.structs.replace(op, component=_NO_COMPONENT))]
        component = op.component
        if id(component) not in seen_components:
            seen_components.add(id(component))
            dag = component.dag
            if dag is not None:
                blobs.append(msgspec.json.encode(msgspec.structs.replace(component, dag=msgspec.structs.replace(dag, ops=[]))))
                stack.extend(dag.ops)
            else:
                blobs.append(msgspec.json.encode(component))
        for blob in blobs:
            plain = plain and b"{{" not in blob and b"{%" not in blob
            # omit_defaults: the field name appears only where it is set (or in some string)
            to_env = to_env or b'"to_env"' in blob
            to_init = to_init or b'"to_init"' in blob
    return PipelineFlags(plain, to_env, to_init)

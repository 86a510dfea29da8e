"""Build compiled pipelines in code, for engine tests that should not depend on YAML parsing."""

from __future__ import annotations

from typing import Any

from flowd.spec.compiled import Component, Dag, IOSpec, Matrix, Op, ParamSpec, Termination


def job(name: str, *, upstream: list[str] | None = None, params: dict[str, Any] | None = None,
        inputs: list[IOSpec] | None = None, outputs: list[IOSpec] | None = None,
        command: list[str] | None = None, kind: str = "job", **fields: Any) -> Op:
    run = {"container": {"image": "busybox", "command": command or ["true"]}}
    return Op(
        name=name,
        component=Component(kind=kind, name=name, inputs=inputs or [], outputs=outputs or [], run=run),
        params={k: v if isinstance(v, ParamSpec) else ParamSpec(value=v) for k, v in (params or {}).items()},
        upstream=upstream or [],
        **fields,
    )


def dag(name: str, ops: list[Op], *, concurrency: int | None = None, inputs: list[IOSpec] | None = None,
        params: dict[str, Any] | None = None, early_stopping: list | None = None, **fields: Any) -> Op:
    return Op(
        name=name,
        component=Component(kind="dag", name=name, inputs=inputs or [],
                            dag=Dag(ops=ops, concurrency=concurrency, early_stopping=early_stopping or [])),
        params={k: v if isinstance(v, ParamSpec) else ParamSpec(value=v) for k, v in (params or {}).items()},
        **fields,
    )


def ref(target: str, path: str) -> ParamSpec:
    return ParamSpec(ref=target, value=path)


__all__ = ["job", "dag", "ref", "IOSpec", "Matrix", "Termination", "ParamSpec", "Op"]

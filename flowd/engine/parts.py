"""What the parts of :class:`flowd.engine.core.Engine` share. The engine is split by concept
into mixins (``PipelinesMixin``, ``RecoveryMixin``) that call each other's steps through
``self``; this base names that shared state and those steps once, so the type checker sees
each part as it runs inside the engine, without a circular base class. At run time it adds
nothing: the declarations exist only for the type checker."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from flowd.engine.core import _Index
    from flowd.engine.messages import Command
    from flowd.engine.resolve import Resolver
    from flowd.engine.state import Node, RunState
    from flowd.spec.compiled import Op
    from flowd.spec.limits import Limits


class EngineParts:
    if TYPE_CHECKING:
        # state, set in Engine.__init__ and per handle() call
        runs: dict[str, RunState]
        _index: dict[str, _Index]
        _out: list[Command]
        _finished: list[tuple[RunState, Node]]
        _now: float

        # steps of core.Engine
        def _new_node(
            self, run: RunState, index: _Index, path: str, parent: str | None, name: str, pos: int,
            kind: str, *, suggestion: dict[str, Any] | None = None, approved: bool = True, n_up: int = 0,
        ) -> Node: ...
        @staticmethod
        def _kind_of(op: Op, *, root: bool = False) -> str: ...
        def _number(self, run: RunState, node: Node, value: Any, what: str, *, integer: bool = True) -> Any: ...
        def _resolver(self, run: RunState, node: Node) -> Resolver: ...
        def _ready(self, run: RunState, node: Node) -> None: ...
        def _finish(self, run: RunState, node: Node, status: str, *, message: str | None = None,
                    reason: str | None = None, outputs: Any = None) -> None: ...
        def _emit_status(self, run: RunState, node: Node) -> None: ...
        def _set_timer(self, run: RunState, timer_id: str, at: float) -> None: ...
        def _cancel_timer(self, run: RunState, timer_id: str) -> None: ...

        limits: Limits

        # steps of tuned.TunedMixin that the pipelines call
        def _start_tuned_matrix(self, run: RunState, node: Node) -> None: ...
        def _next_iteration(self, run: RunState, node: Node) -> bool: ...

        # steps of pipelines.PipelinesMixin that the other parts call
        def _stop(self, run: RunState, node: Node, reason: str, *, early: bool = False) -> None: ...
        def _check_pipeline_end(self, run: RunState, pipeline: Node) -> None: ...

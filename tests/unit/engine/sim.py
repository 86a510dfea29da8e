"""A scripted executor for engine tests: turns StartOp commands into status reports.

Outcomes are decided per op path by a script: ``{"a": ["fail", "ok"]}`` fails the first attempt
of ``a`` and lets the second succeed. It is not a mock of any adapter: it only closes the loop
around the pure engine so tests can assert statuses, attempts and outputs.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from flowd.engine.core import Engine
from flowd.engine.messages import OpStatus, PipelineDone, SetTimer, StartOp, StatusChanged, Submit, TimerFired
from flowd.spec.compiled import Op
from flowd.spec.limits import Limits


class Sim:
    def __init__(self, pipeline: Op, *, script: dict[str, list[Any]] | None = None,
                 outputs: Callable[[StartOp], dict[str, Any] | None] | None = None, run_id: str = "run1",
                 seed: int = 7, hold: set[str] | None = None, limits: Limits | None = None) -> None:
        self.engine = Engine(limits)
        self.run_id = run_id
        self.script = {k: list(v) for k, v in (script or {}).items()}
        self.outputs = outputs or (lambda start: None)
        self.hold = hold or set()  # paths whose StartOp is recorded but not completed
        self.now = 0.0
        self.started: list[StartOp] = []
        self.held: list[StartOp] = []
        self.stops: list[Any] = []
        self.statuses: list[StatusChanged] = []
        self.timers: dict[str, float] = {}
        self.done: PipelineDone | None = None
        self.pending: list[StartOp] = []
        self.feed(Submit(run_id, pipeline, self.now, seed=seed))

    def feed(self, event: Any) -> list[Any]:
        commands = self.engine.handle(event)
        for command in commands:
            if isinstance(command, StartOp):
                self.started.append(command)
                (self.held if command.path in self.hold else self.pending).append(command)
            elif isinstance(command, StatusChanged):
                self.statuses.append(command)
            elif isinstance(command, PipelineDone):
                self.done = command
            elif isinstance(command, SetTimer):
                self.timers[command.timer_id] = command.at
            elif type(command).__name__ == "CancelTimer":
                self.timers.pop(command.timer_id, None)
            elif type(command).__name__ == "StopOp":
                self.stops.append(command)
        return commands

    def step(self) -> bool:
        """Complete the oldest started attempt according to the script. False when idle."""
        if not self.pending:
            return False
        start = self.pending.pop(0)
        self.now += 1.0
        outcome = self.script.get(start.path, ["ok"])
        result = outcome.pop(0) if len(outcome) > 1 else outcome[0]
        self.feed(OpStatus(self.run_id, start.path, start.attempt, "running", self.now))
        if result == "ok":
            self.feed(OpStatus(self.run_id, start.path, start.attempt, "succeeded", self.now, outputs=self.outputs(start)))
        elif result == "fail":
            self.feed(OpStatus(self.run_id, start.path, start.attempt, "failed", self.now, exit_code=3))
        elif result == "hang":
            pass
        else:
            raise AssertionError(result)
        return True

    def run(self, limit: int = 100_000) -> None:
        for _ in range(limit):
            if not self.step():
                return

    def fire_timers(self) -> None:
        for timer_id, at in sorted(self.timers.items(), key=lambda kv: kv[1]):
            self.now = max(self.now, at)
            self.timers.pop(timer_id, None)
            self.feed(TimerFired(self.run_id, timer_id, self.now))

    # --- assertions helpers
    def status(self, path: str) -> str:
        return self.engine.runs[self.run_id].nodes[path].status

    def node(self, path: str):
        return self.engine.runs[self.run_id].nodes[path]

    def order(self) -> list[str]:
        return [s.path for s in self.started]

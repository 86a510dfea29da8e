"""One ``runs`` partition's state and the pure step that applies an input record to it.

``PartitionState.apply(record, outcome)`` decodes a record, translates it to an engine event,
feeds the engine, and translates the engine's commands into what the serve loop must do:
wire events to produce (``outcome.events``), subscriptions to register or end, dead letters,
and side effects (``outcome.effects``: StartOp/StopOp/SetTimer/CancelTimer) to carry out
just before the transaction commits (they are idempotent by key). No I/O, no clock: the same records give the same outcome,
which is what makes replay after a crash, and ``flowd replay``'s divergence report, possible.

Beside the engine it keeps the daemon's own bookkeeping (``DaemonState``, snapshotted with the
engine): the attempts in flight (re-issued to the idempotent executor after a restore), the
ids of finished runs (a late duplicate submission is ignored) and trigger subscriptions.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import msgspec

from flowd.daemon import wire
from flowd.daemon.urlrefs import FetchNeeded
from flowd.engine import (
    DONE,
    Approve,
    CancelTimer,
    Command,
    Engine,
    Event,
    OpStatus,
    PipelineDone,
    Resume,
    SetTimer,
    StartHook,
    StartOp,
    StatusChanged,
    Stop,
    StopOp,
    Submit,
    TimerFired,
)
from flowd.spec.compiled import Op
from flowd.spec.limits import Limits

__all__ = ["Record", "Outcome", "PartitionState", "Compiler", "subscription_refs"]

# run ids of finished runs are remembered this long after the engine forgets the run
DEDUPE_HORIZON = 7 * 24 * 3600.0


class Record(NamedTuple):
    """A consumed Kafka record, reduced to what the step needs."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    # the record's timestamp, seconds since the epoch (dead letters carry it)
    timestamp: float = 0.0


Compiler = Callable[[wire.Submission], "tuple[Op | None, list[wire.Diagnostic]]"]


class Outcome:
    """What one batch of records asks the serve loop to do."""

    __slots__ = ("events", "subscriptions", "deadletters", "effects", "transitions", "ignored", "finished", "fetches",
                 "cache_entries", "submissions")

    def __init__(self) -> None:
        self.events: list[tuple[str, wire.StatusEvent | wire.CompletionEvent | wire.HookEvent]] = []
        # hook runs to submit to ``runs`` in the batch's transaction (POLYFLOW §8.3)
        self.submissions: list[wire.Submission] = []
        self.subscriptions: list[tuple[str, wire.Subscription | None]] = []
        self.deadletters: list[wire.DeadLetter] = []
        self.effects: list[Command] = []
        # (op path is "" for the pipeline, status, time) of every transition, for metrics
        self.transitions: list[StatusChanged] = []
        self.finished: list[wire.CompletionEvent] = []
        # submissions whose urlRefs the daemon must fetch (flowd.daemon.urlrefs)
        self.fetches: list[wire.Submission] = []
        # results to cache, produced in the same transaction as the events (flowd.daemon.cache)
        self.cache_entries: list[wire.CacheEntry] = []
        self.ignored = 0


def subscription_refs(op: Op) -> list[dict[str, Any]]:
    """The top-level ``events`` entries that subscribe to something outside the pipeline."""
    return [e for e in op.events if isinstance(e.get("ref"), str) and not e["ref"].startswith("ops.")]


class PartitionState:
    # the deployment's artifact store location, put into every run's context (flowd.daemon.artifacts)
    artifacts_store: str | None = None

    def __init__(self, partition: int, *, compiler: Compiler, engine: Engine | None = None,
                 daemon: wire.DaemonState | None = None, limits: Limits | None = None) -> None:
        self.partition = partition
        self.compiler = compiler
        self.engine = engine or Engine(limits)
        self.daemon = daemon or wire.DaemonState(inflight={}, stopping=[], finished={}, subscriptions={})
        self._stopping = set(self.daemon.stopping)
        self._attempt_keys: dict[tuple[str, str, int], str] = {
            (c.run_id, c.path, c.attempt): k for k, c in self.daemon.inflight.items()
        }
        # run ids whose state (engine or bookkeeping) changed since the last snapshot: only
        # their blobs are written again (flowd.daemon.snapshots); all, after a format-1 restore
        self._by_run: dict[str, set[str]] = {}
        for k, c in self.daemon.inflight.items():
            self._by_run.setdefault(c.run_id, set()).add(k)
        self.dirty: set[str] = set(self.engine.runs)
        # what the partition's latest committed format-2 snapshot holds (seq 0: none yet)
        self.written = wire.SnapshotIndex()
        self.written_seq = 0
        self.written_daemon: bytes | None = None
        self.written_index: wire.BlobRef | None = None
        # run id -> (its compiled pipeline, the digest naming the ``spec:`` blob that holds it):
        # runs of one pipeline share that blob, and a run's pipeline is hashed once, not per snapshot
        self.run_specs: dict[str, tuple[Any, str]] = {}
        # called with a run id before a record may change that run (and nothing else of the
        # engine): a snapshot being written in the background (flowd.daemon.snapshot_job)
        self.before_change: Callable[[str], None] | None = None

    # ----------------------------------------------------------------------- snapshots

    def snapshot(self, *, offset: int, time: float) -> wire.SnapshotRecord:
        self.daemon.stopping = sorted(self._stopping)
        return wire.SnapshotRecord(partition=self.partition, offset=offset, time=time,
                                   engine=self.engine.snapshot(), daemon=self.daemon)

    @classmethod
    def restore(cls, record: wire.SnapshotRecord, *, compiler: Compiler, limits: Limits | None = None) -> PartitionState:
        return cls(record.partition, compiler=compiler, engine=Engine.restore(record.engine, limits=limits),
                   daemon=record.daemon)

    # -------------------------------------------------------- format 2 (flowd.daemon.snapshots)

    def run_attempts(self, run_id: str, parts: int) -> wire.RunAttempts:
        """The daemon's attempts of one run, as far as the engine state cannot derive them."""
        derivable = set(self.engine.in_flight_keys(run_id))
        mine = self._inflight_of(run_id)
        return wire.RunAttempts(
            parts=parts,
            started=[c for k, c in mine.items() if k not in derivable],
            not_in_flight=sorted(derivable - mine.keys()),
            stopping=sorted(k for k in mine if k in self._stopping))

    def _inflight_of(self, run_id: str) -> dict[str, StartOp]:
        keys = self._by_run.get(run_id, ())
        return {k: self.daemon.inflight[k] for k in keys if k in self.daemon.inflight}

    def daemon_blob(self) -> wire.DaemonBlob:
        """The bookkeeping the run blobs do not carry (attempts of runs the engine forgot)."""
        runs = self.engine.runs
        orphans = {k: c for k, c in self.daemon.inflight.items() if c.run_id not in runs}
        return wire.DaemonBlob(finished=self.daemon.finished, subscriptions=self.daemon.subscriptions,
                               fetching=self.daemon.fetching, inflight=orphans,
                               stopping=sorted(k for k in orphans if k in self._stopping))

    @classmethod
    def from_blobs(cls, partition: int, *, engine: Engine, daemon: wire.DaemonBlob,
                   attempts: dict[str, wire.RunAttempts], compiler: Compiler) -> PartitionState:
        """A partition restored from format-2 blobs: attempts in flight derived from the engine
        (minus ``not_in_flight``) plus those stored (``started``)."""
        inflight: dict[str, StartOp] = dict(daemon.inflight)
        stopping = list(daemon.stopping)
        for run_id, a in attempts.items():
            for cmd in engine.in_flight(run_id, skip=set(a.not_in_flight)):
                inflight[cmd.key] = cmd
            for cmd in a.started:
                inflight[cmd.key] = cmd
            stopping.extend(a.stopping)
        state = wire.DaemonState(inflight=inflight, stopping=stopping, finished=daemon.finished,
                                 subscriptions=daemon.subscriptions, fetching=daemon.fetching)
        out = cls(partition, compiler=compiler, engine=engine, daemon=state, limits=engine.limits)
        out.dirty = set()
        return out

    def compact(self, *, now: float, retention: float) -> int:
        """Forget runs finished more than ``retention`` seconds before ``now``, and the oldest
        finished ones beyond ``max_retained_runs`` (remembering their ids for the dedupe
        horizon). Returns how many were forgotten."""
        gone = []
        kept = []
        for run_id, run in self.engine.runs.items():
            if run.done:
                finished_at = run.nodes[""].finished_at or run.created_at
                if finished_at < now - retention:
                    gone.append((run_id, finished_at))
                else:
                    kept.append((finished_at, run_id))
        # and at most max_retained_runs finished runs (joins read them: docs/joins.md), the
        # oldest forgotten first
        extra = len(kept) - self.engine.limits.max_retained_runs
        if extra > 0:
            gone.extend((run_id, finished_at) for finished_at, run_id in sorted(kept)[:extra])
        for run_id, finished_at in gone:
            self.engine.forget(run_id)
            self.daemon.finished[run_id] = finished_at
        horizon = now - DEDUPE_HORIZON
        for run_id in [r for r, t in self.daemon.finished.items() if t < horizon]:
            del self.daemon.finished[run_id]
        return len(gone)

    # ------------------------------------------------------------------------ queries

    def pending_timers(self) -> list[tuple[str, str, float]]:
        """(run id, timer id, due time) of every armed timer: re-armed after a restore."""
        return self.engine.pending_timers()

    def pending_attempts(self) -> list[tuple[StartOp, bool]]:
        """Attempts in flight and whether the engine asked to stop each (re-issued after a restore)."""
        return [(cmd, key in self._stopping) for key, cmd in self.daemon.inflight.items()]

    def run_ids(self) -> list[str]:
        return list(self.engine.runs)

    # -------------------------------------------------------------------------- the step

    def apply(self, record: Record, out: Outcome) -> None:
        if record.value is None:
            out.deadletters.append(self._dead(record, "undecodable", "empty value (tombstone) on an input topic"))
            return
        try:
            msg = wire.decode_runs(record.value)
        except msgspec.ValidationError as exc:
            out.deadletters.append(self._dead(record, "invalid", str(exc)))
            return
        except msgspec.DecodeError as exc:
            out.deadletters.append(self._dead(record, "undecodable", str(exc)))
            return
        if self.before_change is not None:
            self.before_change(msg.run_id)  # a snapshot in progress encodes the run as it is now
        self.dirty.add(msg.run_id)
        if record.key != msg.run_id.encode():
            # on the key's partition, not the run's: a later, correctly keyed command would go
            # elsewhere and never find the run. Refused rather than run half-reachable.
            shown = record.key.decode(errors="replace") if record.key is not None else None
            out.deadletters.append(self._dead(
                record, "wrong_key", f"key must be the run id: key {shown!r}, run_id {msg.run_id!r}"))
            return
        if isinstance(msg, wire.Submission):
            self._submission(record, msg, out)
            return
        event: Event
        cache_key: str | None = None
        if isinstance(msg, wire.OpReport):
            event = OpStatus(run_id=msg.run_id, path=msg.path, attempt=msg.attempt, status=msg.status,
                             time=msg.time, message=msg.message, reason=msg.reason,
                             exit_code=msg.exit_code, outputs=msg.outputs, metrics=msg.metrics)
            if msg.status in DONE:
                key = self._attempt_keys.pop((msg.run_id, msg.path, msg.attempt), None)
                if key is not None:
                    started = self.daemon.inflight.pop(key, None)
                    self._stopping.discard(key)
                    keys = self._by_run.get(msg.run_id)
                    if keys is not None:
                        keys.discard(key)
                        if not keys:
                            del self._by_run[msg.run_id]
                    if started is not None and started.cache_key is not None and msg.status == "succeeded" \
                            and msg.reason != "CacheHit":
                        cache_key = started.cache_key
        elif isinstance(msg, wire.TimerFiring):
            event = TimerFired(run_id=msg.run_id, timer_id=msg.timer_id, time=msg.time)
        elif isinstance(msg, wire.StopCommand):
            if msg.path == "" and msg.run_id in self.daemon.subscriptions:
                self._unsubscribe(msg, out)
                return
            event = Stop(run_id=msg.run_id, time=msg.time, path=msg.path, reason=msg.reason)
        elif isinstance(msg, wire.ResumeCommand):
            event = Resume(run_id=msg.run_id, time=msg.time)
        else:
            event = Approve(run_id=msg.run_id, path=msg.path, time=msg.time)
        run = self.engine.runs.get(event.run_id)
        if run is None:
            if event.run_id in self.daemon.finished and not isinstance(event, Resume):
                # a late report, timer, stop or approval of a run finished (and forgotten after
                # `retention`): acted on as on any finished run, by doing nothing
                out.ignored += 1
            else:
                what = type(msg).__name__
                out.deadletters.append(self._dead(
                    record, "unknown_run", f"{what} for run {event.run_id!r}, which this partition "
                    f"({self.partition}) does not know: check its key is the run id, and the run id"))
            return
        path = getattr(event, "path", "")
        if isinstance(event, (Stop, Approve)) and path not in run.nodes:
            out.deadletters.append(self._dead(
                record, "unknown_op", f"{type(msg).__name__} for op {path!r} of run {event.run_id!r}, which "
                "has no such op (yet): ops of a nested pipeline exist once it starts"))
            return
        self._handle(record, event, out)
        if cache_key is not None:
            node = run.nodes.get(path)
            if node is not None and node.status == "succeeded" and node.attempt == event.attempt:  # type: ignore[union-attr]
                out.cache_entries.append(wire.CacheEntry(key=cache_key, run_id=run.run_id, path=path,
                                                         finished_at=event.time, outputs=node.outputs))

    def _submission(self, record: Record, msg: wire.Submission, out: Outcome) -> None:
        run_id = msg.run_id
        if run_id in self.engine.runs or run_id in self.daemon.finished or run_id in self.daemon.subscriptions:
            out.ignored += 1  # a redelivered or re-triggered submission: exactly once per run id
            return
        if (msg.spec is None) == (msg.pipeline is None):
            out.deadletters.append(self._dead(record, "invalid", "a submission needs exactly one of `spec` and `pipeline`"))
            return
        fetched = msg.url_documents or msg.url_errors
        if run_id in self.daemon.fetching:
            if not fetched:
                out.ignored += 1  # a redelivered submission whose urlRefs are being fetched
                return
            del self.daemon.fetching[run_id]
        pipeline = msg.pipeline
        if pipeline is None:
            try:
                pipeline, diagnostics = self.compiler(msg)
            except FetchNeeded:
                # fetched off this path; the result comes back as a submission with the documents
                self.daemon.fetching[run_id] = msg
                out.fetches.append(msg)
                return
            errors = [d for d in diagnostics if d.severity == "error"]
            if pipeline is None or errors:
                self._invalid(msg, errors or diagnostics, out)
                return
        if subscription_refs(pipeline):
            self._subscribe(msg, pipeline, out)
            return
        context = msg.context
        if self.artifacts_store is not None:
            # refs to artifacts name this deployment's store, whatever a submitter wrote
            context = {**(context or {}), "artifacts_store": self.artifacts_store}
        self._handle(record, Submit(run_id=run_id, pipeline=pipeline, time=msg.time, seed=msg.seed,
                                    context=context, hook_of=msg.hook_of), out)

    def _invalid(self, msg: wire.Submission, diagnostics: list[wire.Diagnostic], out: Outcome) -> None:
        name = (msg.source or "pipeline").rsplit("/", 1)[-1]
        text = f"invalid submission: {len(diagnostics)} error(s): " + "; ".join(
            f"{d.location + ': ' if d.location else ''}{d.message}" for d in diagnostics[:5])
        status = wire.StatusEvent(run_id=msg.run_id, pipeline=name, path="", status="failed", time=msg.time,
                                  key=f"{msg.run_id}/#0:failed", message=text, reason="InvalidSpec")
        done = wire.CompletionEvent(run_id=msg.run_id, pipeline=name, status="failed", time=msg.time,
                                    key=f"{msg.run_id}:done", message=text, diagnostics=diagnostics)
        # a run that failed before it started: counted like any failed run (flowd_transitions_total)
        out.transitions.append(StatusChanged(run_id=msg.run_id, path="", status="failed", time=msg.time,
                                             key=status.key, message=text, reason="InvalidSpec"))
        out.events.append((msg.run_id, status))
        out.events.append((msg.run_id, done))
        out.finished.append(done)
        self.daemon.finished[msg.run_id] = msg.time

    def _subscribe(self, msg: wire.Submission, pipeline: Op, out: Outcome) -> None:
        refs = subscription_refs(pipeline)
        template = msgspec.structs.replace(pipeline, events=[e for e in pipeline.events if e not in refs])
        sub = wire.Subscription(id=msg.run_id, events=refs, pipeline=template, time=msg.time)
        self.daemon.subscriptions[msg.run_id] = sub
        out.subscriptions.append((msg.run_id, sub))
        what = ", ".join(str(e.get("ref")) for e in refs)
        out.events.append((msg.run_id, wire.StatusEvent(
            run_id=msg.run_id, pipeline=pipeline.name, path="", status="created", time=msg.time,
            key=f"{msg.run_id}/#0:created", reason="Subscribed", message=f"waiting for events of {what}")))

    def _unsubscribe(self, msg: wire.StopCommand, out: Outcome) -> None:
        sub = self.daemon.subscriptions.pop(msg.run_id)
        out.subscriptions.append((msg.run_id, None))
        name = sub.pipeline.name
        out.events.append((msg.run_id, wire.StatusEvent(
            run_id=msg.run_id, pipeline=name, path="", status="stopped", time=msg.time,
            key=f"{msg.run_id}/#0:stopped", reason=msg.reason or "StopRequested")))
        done = wire.CompletionEvent(run_id=msg.run_id, pipeline=name, status="stopped", time=msg.time,
                                    key=f"{msg.run_id}:done", message="subscription ended")
        out.events.append((msg.run_id, done))
        out.finished.append(done)
        self.daemon.finished[msg.run_id] = msg.time

    def _handle(self, record: Record, event: Event, out: Outcome) -> None:
        try:
            commands = self.engine.handle(event)
        except Exception as exc:  # noqa: BLE001 - an input no correct producer sends; keep flowing
            out.deadletters.append(self._dead(record, "rejected", f"{type(exc).__name__}: {exc}"))
            return
        for command in commands:
            self._command(command, out)

    def _command(self, command: Command, out: Outcome) -> None:
        if isinstance(command, StatusChanged):
            run = self.engine.runs.get(command.run_id)
            out.transitions.append(command)
            out.events.append((command.run_id, wire.StatusEvent(
                run_id=command.run_id, pipeline=run.pipeline.name if run else "", path=command.path,
                status=command.status, time=command.time, key=command.key, attempt=command.attempt,
                message=command.message, reason=command.reason, outputs=command.outputs,
                epoch=run.epoch if run else 0, joined=command.joined)))
        elif isinstance(command, PipelineDone):
            run = self.engine.runs.get(command.run_id)
            done = wire.CompletionEvent(run_id=command.run_id, pipeline=run.pipeline.name if run else "",
                                        status=command.status, time=command.time,
                                        key=command.key, message=command.message,
                                        epoch=run.epoch if run else 0)
            out.events.append((command.run_id, done))
            out.finished.append(done)
        elif isinstance(command, StartOp):
            self.daemon.inflight[command.key] = command
            self._by_run.setdefault(command.run_id, set()).add(command.key)
            self._attempt_keys[(command.run_id, command.path, command.attempt)] = command.key
            out.effects.append(command)
        elif isinstance(command, StopOp):
            if command.key in self.daemon.inflight:
                self._stopping.add(command.key)
            out.effects.append(command)
        elif isinstance(command, (SetTimer, CancelTimer)):
            out.effects.append(command)
        elif isinstance(command, StartHook):
            self._hook(command, out)

    def _hook(self, command: StartHook, out: Outcome) -> None:
        """A hook run enters like every run: a submission on ``runs`` (keyed by its derived run
        id), produced in this batch's transaction. An aborted transaction takes it back and the
        replay derives it again; a committed one may be read twice, and runs once."""
        src = command.source
        run = self.engine.runs.get(src.run_id)
        out.events.append((src.run_id, wire.HookEvent(
            run_id=src.run_id, pipeline=run.pipeline.name if run else "", path=src.path, attempt=src.attempt,
            index=src.index, hub_ref=src.hub_ref, trigger_status=src.status, hook_run_id=command.hook_run_id,
            status=command.status, time=command.time, key=command.key, message=command.message, epoch=src.epoch)))
        if command.status == "created" and command.pipeline is not None:
            out.submissions.append(wire.Submission(
                run_id=command.hook_run_id, time=command.time, pipeline=command.pipeline, seed=command.seed,
                source=f"hook:{src.run_id}/{src.path}#{src.index}", context=command.context,
                hook_of=src))

    def dead_letter(self, record: Record, reason: str, error: str) -> wire.DeadLetter:
        """The dead letter of ``record`` (also for the worker's own verdicts: crashed, handler_error)."""
        return self._dead(record, reason, error)

    def _dead(self, record: Record, reason: str, error: str) -> wire.DeadLetter:
        return wire.DeadLetter(reason=reason, error=error, topic=record.topic, partition=record.partition,
                               offset=record.offset, time=record.timestamp, key=record.key, value=record.value)

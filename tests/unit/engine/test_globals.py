"""`globals` (POLYFLOW §3.5): the whole list, Polyaxon's types, a real deterministic uuid."""

from __future__ import annotations

import textwrap
import uuid
from datetime import datetime

from flowd.engine.core import Engine
from flowd.engine.messages import Submit
from flowd.spec import compile_text
from tests.unit.engine.sim import Sim

KEYS = ("owner_name", "project_name", "project_unique_name", "project_uuid", "username", "user_email", "run_info",
        "name", "uuid", "namespace", "iteration", "context_path", "artifacts_path", "run_artifacts_path",
        "run_outputs_path", "run_relative_outputs_path", "store_path", "created_at", "compiled_at", "schedule_at",
        "started_at", "finished_at", "duration", "cloning_kind", "original_uuid", "is_independent")

PIPELINE = """
kind: component
name: globs
run:
  kind: dag
  operations:
    - name: first
      component: {run: {kind: job, container: {image: busybox, command: [echo]}}}
    - name: show
      params:
        g: {value: "{{ globals }}", contextOnly: true}
        up: {ref: ops.first, value: globals.finished_at, contextOnly: true}
      matrix: {kind: mapping, values: [{x: 1}]}
      dependencies: [first]
      component: {run: {kind: job, container: {image: busybox, command: [echo, "{{ globals.uuid }}", "{{ globals.iteration }}"]}}}
"""


def test_every_global_with_polyaxons_types():
    op = compile_text(textwrap.dedent(PIPELINE), source="t.yaml").op
    sim = Sim(op, run_id="run-42")
    sim.run()
    show = next(s for s in sim.started if s.path == "show[0]")
    g = show.params["g"]
    assert set(KEYS) <= set(g)
    # params of a matrix op are resolved once, by the matrix op; the run section per child
    assert g["uuid"] == str(uuid.uuid5(uuid.NAMESPACE_URL, "flowd:run-42/show"))
    child = str(uuid.uuid5(uuid.NAMESPACE_URL, "flowd:run-42/show[0]"))
    assert show.run["container"]["command"] == ["echo", child, "0"]
    assert uuid.UUID(g["project_uuid"]).version == 5
    assert g["project_name"] == "globs" and g["run_info"] == f"flowd.globs.runs.{g['uuid']}"
    assert g["iteration"] is None and g["is_independent"] is False
    assert g["run_outputs_path"] == f"/plx-context/artifacts/{g['uuid']}/outputs"
    assert datetime.fromisoformat(g["created_at"]).tzinfo is not None
    assert datetime.fromisoformat(show.params["up"]).tzinfo is not None


def test_the_submission_context_sets_owner_and_paths():
    op = compile_text(textwrap.dedent(PIPELINE), source="t.yaml").op
    engine = Engine()
    engine.handle(Submit("r", op, 0.0, context={"owner_name": "ana", "context_path": "/state/runs/r"}))
    from flowd.engine.resolve import run_globals

    g = run_globals("r", engine.runs["r"].nodes["first"], engine.runs["r"].context)
    assert (g["owner_name"], g["project_unique_name"]) == ("ana", "ana.globs")
    assert g["artifacts_path"] == "/state/runs/r/artifacts"
    restored = Engine.restore(engine.snapshot())
    assert restored.runs["r"].context == engine.runs["r"].context

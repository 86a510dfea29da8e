"""Differential test against the executable oracle, Polyaxon 2.18 (POLYFLOW §10.1).

Optional: runs only when ``FLOWD_POLYAXON_PYTHON`` names the python of a venv with
``polyaxon==2.18.0`` (``python3 -m venv /tmp/polyaxon-venv && /tmp/polyaxon-venv/bin/pip install
polyaxon==2.18.0``). It compares verdicts on every fixture under tests/fixtures/spec and on seeded
random mutations of the valid ones; the deliberate differences (docs/spec.md) are listed here.
"""

from __future__ import annotations

import copy
import json
import os
import random
import subprocess
import tempfile
from pathlib import Path
from typing import Any

import pytest

from flowd.spec import compile_path, dump_text, load_text

PYTHON = os.environ.get("FLOWD_POLYAXON_PYTHON")
pytestmark = pytest.mark.skipif(not PYTHON, reason="set FLOWD_POLYAXON_PYTHON to a python with polyaxon==2.18.0")

FIX = Path(__file__).resolve().parents[2] / "fixtures" / "spec"

# fixture -> why flowd's verdict differs from the reference (see docs/spec.md)
DELIBERATE = {
    "io_duplicate.yaml": "duplicate IO names are rejected ([FLOWD] §1.7)",
    "template_cycle.yaml": "{{ ops.X }} templates create edges ([FLOWD] §3.6)",
    "template_dag_input.yaml": "{{ dag.inputs.Z }} templates are checked ([FLOWD] §3.5)",
    "template_unknown_op.yaml": "{{ ops.X }} templates are checked ([FLOWD] §3.5)",
    "template_unknown_output.yaml": "{{ ops.X }} templates are checked ([FLOWD] §3.5)",
    "delayed_and_validation.yaml": "validation.delay is honoured ([FLOWD] §2.5)",
    "fan_out_fan_in.yaml": "the `ops:` shorthand (founding example)",
    "float_metric.yaml": "float and metric refs are compatible ([FLOWD] §2.7)",
    "hub_refs.yaml": "hubRef resolves against a hub folder, the oracle needs the network",
    "datetime_auth.yaml": "datetime is a real timestamp, auth a user:password string ([FLOWD] §2.2, §11)",
    "path_ref_no_ext.yaml": "a pathRef without extension also tries .yaml/.yml (flowd extension)",
}
# a mutation of these keeps their deliberate difference
_INHERITED = {"delayed_and_validation", "fan_out_fan_in", "float_metric", "templates_edges", "hub_refs",
              "datetime_auth", "path_ref_no_ext"}
_MESSAGES = ("duplicate input name", "duplicate output name", "which is not an op of this DAG", "declares no output",
             "declares no input", "Jinja reads")

ORACLE = r"""
import json, os, sys
from polyaxon._polyaxonfile import check_polyaxonfile
out = {}
for path in sys.argv[1:]:
    try:
        check_polyaxonfile(polyaxonfile=os.path.abspath(path), is_cli=False, to_op=True, verbose=False)
        out[path] = None
    except BaseException as exc:
        out[path] = f"{type(exc.__cause__ or exc).__name__}: {str(exc.__cause__ or exc)[:300]}"
print(json.dumps(out))
"""


def _oracle(paths: list[Path]) -> dict[str, str | None]:
    home = tempfile.mkdtemp()
    env = dict(os.environ, HOME=home, POLYAXON_HOME=home)
    out = subprocess.run([PYTHON, "-c", ORACLE, *map(str, paths)], capture_output=True, text=True, env=env,
                         timeout=600, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])  # type: ignore[no-any-return]


def test_fixture_verdicts_match_the_oracle() -> None:
    files = sorted(p for d in ("valid", "invalid") for p in (FIX / d).iterdir() if p.suffix in (".yaml", ".json"))
    verdicts = _oracle(files)
    wrong = []
    for path in files:
        result = compile_path(path, hub=str(FIX / "hub"))
        ours, theirs = result.valid, verdicts[str(path)] is None
        if path.name in DELIBERATE:
            continue
        if ours != theirs:
            wrong.append(f"{path.name}: oracle {'valid' if theirs else verdicts[str(path)]}; flowd "
                         + ("valid" if ours else "; ".join(d.message for d in result.errors)))
    assert not wrong, "\n".join(wrong)


def _paths(node: Any, pre: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    out = [pre]
    if isinstance(node, dict):
        for k, v in node.items():
            out += _paths(v, (*pre, k))
    elif isinstance(node, list):
        for i, v in enumerate(node):
            out += _paths(v, (*pre, i))
    return out


JUNK = [None, True, False, 0, 1, -1, 2.5, "", "x", "{{ x }}", [], {}, [1], ["a"], {"a": 1}, "1", "yes",
        "2020-01-01", "ops.a", "s3://b"]


def test_mutation_verdicts_match_the_oracle(tmp_path: Path) -> None:
    rng = random.Random(int(os.environ.get("FLOWD_ORACLE_SEED", "1")))
    sources = [p for p in sorted((FIX / "valid").iterdir()) if p.suffix == ".yaml"]
    cases: list[tuple[Path, str]] = []
    for i in range(int(os.environ.get("FLOWD_ORACLE_CASES", "200"))):
        src = rng.choice(sources)
        doc = copy.deepcopy(load_text(src.read_text()))
        paths = [p for p in _paths(doc) if p]
        path = rng.choice(paths)
        parent = doc
        for part in path[:-1]:
            parent = parent[part]
        if rng.random() < 0.3:
            del parent[path[-1]]
        else:
            parent[path[-1]] = rng.choice(JUNK)
        case = tmp_path / f"{i:04d}_{src.name}"
        case.write_text(dump_text(doc))
        cases.append((case, src.stem))
    verdicts = _oracle([c for c, _ in cases])
    wrong = []
    for case, stem in cases:
        if stem in _INHERITED:
            continue
        result = compile_path(case)
        theirs = verdicts[str(case)] is None
        if result.valid != theirs and not any(m in d.message for d in result.errors for m in _MESSAGES):
            wrong.append(f"{case.name}: oracle {verdicts[str(case)] or 'valid'}; flowd "
                         + ("valid" if result.valid else "; ".join(d.message for d in result.errors)))
    assert not wrong, "\n".join(wrong)

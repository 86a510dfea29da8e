"""Every file under tests/fixtures/spec/{valid,invalid} states what ``compile_path`` must say.

Directives (comment lines at the top of the file, or in ``<file>.expect`` for JSON):

* ``expect-error: LOCATION :: FRAGMENT`` -- an error at exactly LOCATION whose message contains FRAGMENT
* ``expect-warning: LOCATION :: FRAGMENT`` -- the same for a warning
* ``expect-line: LINE:COL`` -- the first error's position
* ``PARAMS: name=value ...`` -- submission params (as ``flowd check --param``)
* ``expect-upstream: OP = A, B`` -- the upstream list of a top-level DAG op, in order
* ``expect-event: OP = X: s1, s2`` -- the event edge X -> OP and its statuses
* ``expect-deferred: OP :: FRAGMENT`` -- a deferred error recorded on OP's nested DAG
* ``expect-run: a.b = LITERAL`` -- a value of the root component's runtime body
* ``expect-termination: OP = MAX_RETRIES, TIMEOUT`` -- an op's effective termination
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from flowd.spec import compile_path

FIXTURES = Path(__file__).resolve().parents[2] / "fixtures" / "spec"
HUB = FIXTURES / "hub"


def _files(kind: str) -> list[Path]:
    return sorted(p for p in (FIXTURES / kind).iterdir() if p.suffix in (".yaml", ".yml", ".json"))


def _directives(path: Path) -> list[tuple[str, str]]:
    source = path.with_name(path.name + ".expect") if path.suffix == ".json" else path
    out: list[tuple[str, str]] = []
    if not source.exists():
        return out
    for line in source.read_text().splitlines():
        if not line.startswith("#"):
            break
        body = line[1:].strip()
        key, sep, value = body.partition(":")
        if sep and (key.startswith("expect-") or key == "PARAMS"):
            out.append((key, value.strip()))
    return out


def _compile(path: Path):
    params = {}
    for key, value in _directives(path):
        if key == "PARAMS":
            for item in value.split():
                name, _, val = item.partition("=")
                params[name] = val
    return compile_path(path, hub=str(HUB), params=params or None)


def _ops(result):
    dag = result.op.component.dag
    return {op.name: op for op in dag.ops}


def _check(path: Path, result) -> None:
    for key, value in _directives(path):
        if key in ("expect-error", "expect-warning"):
            loc, _, fragment = value.partition("::")
            loc, fragment = loc.strip(), fragment.strip()
            pool = result.errors if key == "expect-error" else result.warnings
            hits = [d for d in pool if d.location == loc and fragment in d.message]
            assert hits, f"{path.name}: no {key[7:]} at `{loc}` containing {fragment!r}; got " + "; ".join(
                f"{d.location}: {d.message}" for d in pool
            )
            for d in hits:
                if loc and not loc.startswith("--param"):
                    assert d.line is not None and d.column is not None, d
        elif key == "expect-line":
            line, col = (int(x) for x in value.split(":"))
            assert (result.errors[0].line, result.errors[0].column) == (line, col), result.errors[0]
        elif key == "expect-upstream":
            name, _, ups = value.partition("=")
            want = [u.strip() for u in ups.split(",") if u.strip()]
            assert _ops(result)[name.strip()].upstream == want
        elif key == "expect-event":
            name, _, rest = value.partition("=")
            target, _, statuses = rest.partition(":")
            want = [s.strip() for s in statuses.split(",")]
            assert _ops(result)[name.strip()].event_edges == {target.strip(): want}
        elif key == "expect-deferred":
            name, _, fragment = value.partition("::")
            dag = _ops(result)[name.strip()].component.dag
            assert any(fragment.strip() in e for e in dag.errors), dag.errors
        elif key == "expect-run":
            dotted, _, literal = value.partition("=")
            node = result.op.component.run
            for part in dotted.strip().split("."):
                node = node[part]
            assert node == ast.literal_eval(literal.strip())
        elif key == "expect-termination":
            name, _, nums = value.partition("=")
            retries, timeout = (int(x) for x in nums.split(","))
            term = _ops(result)[name.strip()].termination
            assert (term.max_retries, term.timeout) == (retries, timeout)


@pytest.mark.parametrize("path", _files("invalid"), ids=lambda p: p.name)
def test_invalid_fixture(path: Path) -> None:
    result = _compile(path)
    assert not result.valid, f"{path.name} should be invalid"
    assert result.op is None
    assert any(k == "expect-error" for k, _ in _directives(path)), f"{path.name} states no expect-error"
    _check(path, result)


@pytest.mark.parametrize("path", _files("valid"), ids=lambda p: p.name)
def test_valid_fixture(path: Path) -> None:
    result = _compile(path)
    assert result.valid, f"{path.name}: " + "; ".join(f"{d.location}: {d.message}" for d in result.errors)
    assert result.op is not None
    _check(path, result)

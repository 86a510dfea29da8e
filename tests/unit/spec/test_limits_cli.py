"""The limits through the command line: `flowd check` and `flowd run` print the same error naming
the file, the place, the size and the setting; exit codes stay 1 (check) and 2 (run)."""

from __future__ import annotations

import json
import sys
import textwrap
from pathlib import Path

import pytest

from flowd.cli import main
from tests.unit.spec.test_limits import GRID, alias_bomb

GRID_ERROR = "this matrix expands to 1,000,000,000 runs; the limit is 250,000 (setting max_ops)"


def cli(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    try:
        code = main(list(args))
    except SystemExit as exc:
        code = int(exc.code or 0)
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture
def files(tmp_path: Path) -> dict[str, Path]:
    grid, bomb = tmp_path / "grid.yaml", tmp_path / "bomb.yaml"
    grid.write_text(textwrap.dedent(GRID))
    bomb.write_text(alias_bomb())
    return {"grid": grid, "bomb": bomb}


def test_check_names_file_place_size_and_setting(capsys, files) -> None:
    code, out, _ = cli(capsys, "check", str(files["grid"]), str(files["bomb"]), "--no-snippets")
    assert code == 1
    assert f"{files['grid']}:9:7: error: run.operations[0].matrix: {GRID_ERROR}" in out.splitlines()
    assert f"{files['bomb']}:7:30: error: with its aliases written out, the YAML document is at least 17,089,173 " \
           "bytes; the limit is 16,777,216 (setting max_yaml_expanded_bytes)" in out.splitlines()


def test_check_json_output(capsys, files) -> None:
    code, out, _ = cli(capsys, "check", str(files["grid"]), "--output", "json")
    assert code == 1
    [doc] = json.loads(out)["files"]
    assert doc["errors"] == [{"location": "run.operations[0].matrix", "message": GRID_ERROR, "line": 9, "column": 7}]


def test_limit_flag_and_env_raise_the_limit(capsys, files, monkeypatch) -> None:
    code, out, _ = cli(capsys, "check", str(files["grid"]), "--limit", "max_ops=2G")
    assert code == 0, out
    monkeypatch.setenv("FLOWD_MAX_OPS", "2000000000")
    assert cli(capsys, "check", str(files["grid"]))[0] == 0
    code, out, _ = cli(capsys, "check", str(files["grid"]), "--limit", "max_ops=1000")  # a flag beats the env
    assert code == 1 and "the limit is 1,000 (setting max_ops)" in out


def test_bad_limit_settings_are_usage_errors(capsys, files, monkeypatch) -> None:
    code, _, err = cli(capsys, "check", str(files["grid"]), "--limit", "max_opps=3")
    assert code == 2 and "unknown limit 'max_opps'" in err
    monkeypatch.setenv("FLOWD_MAX_SPEC_BYTES", "big")
    code, _, err = cli(capsys, "run", str(files["grid"]))
    assert code == 2 and "FLOWD_MAX_SPEC_BYTES: expected a number" in err


def test_run_refuses_with_exit_2_and_starts_nothing(capsys, files, tmp_path: Path) -> None:
    state = tmp_path / "state"
    code, out, err = cli(capsys, "run", str(files["grid"]), "--state-dir", str(state), "--output", "json")
    assert code == 2 and out == ""
    assert f"{files['grid']}:9:7: error: run.operations[0].matrix: {GRID_ERROR}" in err
    code, _, err = cli(capsys, "run", str(files["bomb"]), "--state-dir", str(state))
    assert code == 2 and "(setting max_yaml_expanded_bytes)" in err
    code, _, err = cli(capsys, "run", str(files["grid"]), "--state-dir", str(state), "--param", "x=" + "y" * 300,
                       "--limit", "max_params_bytes=100")
    assert code == 2 and "the submission params (--param) are 308 bytes as JSON; the limit is 100 " \
                         "(setting max_params_bytes)" in err


RUNTIME = """
version: 1.1
kind: component
name: fan
run:
  kind: dag
  operations:
    - name: gen
      component:
        outputs: [{name: rows, type: list}]
        run:
          kind: job
          container:
            image: python:3.12-slim
            command: [python3, -c]
            args: ["import json, os; json.dump({'rows': [{'i': i} for i in range(30)]}, open(os.environ['FLOWD_OUTPUTS'], 'w'))"]
    - name: each
      dependencies: [gen]
      matrix: {kind: mapping, values: "{{ ops.gen.outputs.rows }}"}
      component:
        inputs: [{name: i, type: int}]
        run: {kind: job, container: {image: x, command: ["true"]}}
"""


def test_run_refuses_a_templated_matrix_when_it_starts(capsys, tmp_path: Path) -> None:
    """Its size is known only once `gen` has run: `flowd check` passes, `flowd run` fails the
    matrix (exit 1, as any failed pipeline) before creating a child."""
    spec = tmp_path / "fan.yaml"
    spec.write_text(textwrap.dedent(RUNTIME).replace("python3", sys.executable))
    assert cli(capsys, "check", str(spec), "--limit", "max_ops=20")[0] == 0
    code, out, _ = cli(capsys, "run", str(spec), "--state-dir", str(tmp_path / "s"), "--output", "json",
                       "--limit", "max_ops=20")
    assert code == 1
    report = json.loads(out)
    assert report["status"] == "failed" and report["ops"]["gen"]["status"] == "succeeded"
    assert report["ops"]["each"]["status"] == "failed"
    assert report["ops"]["each"]["message"] == "this matrix expands to 30 runs; the limit is 20 (setting max_ops)"
    assert not any(path.startswith("each[") for path in report["ops"])

"""``flowd check``: exit codes, text and JSON output, the founding example."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from flowd.cli import main

ROOT = Path(__file__).resolve().parents[3]
FIX = ROOT / "tests" / "fixtures" / "spec"
HUB = ROOT / "examples" / "hub"


def run(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    try:
        code = main(["check", *args])
    except SystemExit as exc:  # argparse usage errors
        code = int(exc.code or 0)
    out, err = capsys.readouterr()
    return code, out, err


def test_valid_file_exits_0(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, str(ROOT / "examples" / "founding" / "pipeline.yaml"), "--hub", str(HUB))
    assert code == 0
    assert "valid (0 error(s), 0 warning(s))" in out


def test_founding_literal(capsys: pytest.CaptureFixture[str]) -> None:
    """The seed's example: `bucket` is passed to a component whose input is `input-bucket`, and the
    container has no image (its `name` looks like one)."""
    path = str(FIX / "founding_literal.yaml")
    code, out, _ = run(capsys, path, "--hub", str(HUB))
    assert code == 1
    lines = out.splitlines()
    assert f"{path}:11:5: error: ops[0].params: Input `input-bucket` is required, no param was passed; a param " \
           "`bucket` was passed but is not declared (did you mean `input-bucket`?)" in lines
    assert any(line.startswith(f"{path}:12:7: warning: ops[0].params.bucket:") and "did you mean `input-bucket`?" in line
               for line in lines)
    assert any(": warning: components[0].run.container: the container has no `image`: it can run locally but not on "
               "Kubernetes" in line for line in lines)
    assert any("components[0].environment.serviceAccount: unknown field `serviceAccount` in `environment` "
               "(did you mean `serviceAccountName`?)" in line for line in lines)


def test_founding_without_hub_names_the_fix(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("FLOWD_HUB", raising=False)
    code, out, _ = run(capsys, str(FIX / "founding_literal.yaml"))
    assert code == 1
    assert ("hubRef `deep-wide-model` could not be resolved: no component hub is configured "
            "(use `--hub DIR` or set FLOWD_HUB)") in out


def test_hub_from_environment(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FLOWD_HUB", str(HUB))
    code, _, _ = run(capsys, str(ROOT / "examples" / "founding" / "pipeline.yaml"))
    assert code == 0


def test_founding_flat_scrape_is_a_yaml_error(capsys: pytest.CaptureFixture[str]) -> None:
    path = str(FIX / "founding_flat.yaml")
    code, out, _ = run(capsys, path)
    assert code == 1
    assert out.startswith(f"{path}:9:1: error: invalid YAML: ")
    assert "Traceback" not in out


def test_json_output_shape(capsys: pytest.CaptureFixture[str]) -> None:
    good = str(ROOT / "examples" / "founding" / "pipeline.yaml")
    bad = str(FIX / "invalid" / "d13_orphan_dependency.yaml")
    code, out, _ = run(capsys, good, bad, "--hub", str(HUB), "--output", "json")
    assert code == 1
    doc = json.loads(out)
    assert [f["path"] for f in doc["files"]] == [good, bad]
    assert [f["valid"] for f in doc["files"]] == [True, False]
    for f in doc["files"]:
        assert set(f) >= {"path", "valid", "errors"}
        for item in f["errors"]:
            assert {"location", "message"} <= set(item)
    err = doc["files"][1]["errors"][0]
    assert err["location"] == "run.operations[1].dependencies[0]"
    assert "orphan ops: `prepar`" in err["message"] and "(did you mean `prepare`?)" in err["message"]
    assert (err["line"], err["column"]) == (7, 36)


def test_missing_file_is_invalid_not_usage(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    code, out, err = run(capsys, str(tmp_path / "nope.yaml"))
    assert code == 1
    assert "nope.yaml: error: no such file" in out
    assert "Traceback" not in out + err


def test_no_arguments_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run(capsys)
    assert code == 2
    assert "usage:" in err


def test_bad_output_format_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    code, _, _ = run(capsys, "x.yaml", "--output", "xml")
    assert code == 2


def test_hub_must_be_a_directory(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    code, _, err = run(capsys, str(FIX / "valid" / "kindless.yaml"), "--hub", str(tmp_path / "missing"))
    assert code == 2
    assert "not a directory" in err


def test_params_are_checked(capsys: pytest.CaptureFixture[str]) -> None:
    path = str(HUB / "deep-wide-model.yaml")
    assert run(capsys, path)[0] == 1  # lr is required
    assert run(capsys, path, "--param", "lr=0.05")[0] == 0
    code, out, _ = run(capsys, path, "--param", "lr=fast")
    assert code == 1
    assert f"{path}: error: --param lr: Could not parse value for input `lr`: expected a number, got 'fast'" in out
    code, out, _ = run(capsys, path, "--param", "lr=5")
    assert "5.0 must be at most 1" in out
    assert run(capsys, path, "--param", "oops")[0] == 2


def test_binary_and_directory_inputs(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    blob = tmp_path / "blob.yaml"
    blob.write_bytes(b"\xff\xfe\x00garbage")
    code, out, _ = run(capsys, str(blob), str(tmp_path))
    assert code == 1
    assert "not UTF-8 text" in out
    assert "is a directory" in out


def test_findings_in_a_referenced_file_name_it(capsys: pytest.CaptureFixture[str]) -> None:
    path = str(FIX / "invalid" / "d9_broken_reference.yaml")
    code, out, _ = run(capsys, path, "--output", "json")
    assert code == 1
    errors = json.loads(out)["files"][0]["errors"]
    remote = [e for e in errors if "file" in e]
    assert remote and remote[0]["file"].endswith("refs/broken.yaml")
    assert remote[0]["location"] == "run.contaner" and (remote[0]["line"], remote[0]["column"]) == (4, 3)
    local = [e for e in errors if "file" not in e]
    assert local[0]["location"] == "run.operations[0].pathRef"


def test_text_output_shows_the_source_line(capsys: pytest.CaptureFixture[str]) -> None:
    path = str(FIX / "invalid" / "d13_orphan_dependency.yaml")
    _, out, _ = run(capsys, path)
    lines = out.splitlines()
    i = next(n for n, line in enumerate(lines) if "orphan ops" in line)
    snippet = "    |     - {name: train, dependencies: [prepar], component: {run: {kind: job, container: {image: busybox}}}}"
    assert lines[i + 1] == snippet
    assert lines[i + 2] == "    | " + " " * 35 + "^"
    _, out, _ = run(capsys, path, "--no-snippets")
    assert "    |" not in out


def test_reference_compat_flag(capsys: pytest.CaptureFixture[str]) -> None:
    path = str(FIX / "valid" / "float_metric.yaml")
    assert run(capsys, path)[0] == 0
    code, out, _ = run(capsys, path, "--reference-compat")
    assert code == 1 and "does not correspond to the type" in out

"""``flowd check PATH... [--hub DIR] [--output text|json]``: validate Polyaxonfiles.

Exit codes: 0 every file valid, 1 any file invalid (a missing file is an invalid file),
2 usage errors (argparse). Text output prints one line per finding,
``FILE:LINE:COL: error: LOCATION: message``, then a summary line per file; JSON output is
``{"files": [{"path", "valid", "errors": [{"location", "message", ...}], "warnings": [...]}]}``.
Never prints a traceback for bad input.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from typing import Any

from flowd.cli._limits import add_limit_args, limits_of
from flowd.spec import CompileResult, Diagnostic, compile_path


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    parser: argparse.ArgumentParser = subparsers.add_parser(
        "check",
        help="validate Polyaxonfiles (schema, references, DAG rules, params)",
        description="Validate Polyaxonfiles: schema, references, DAG rules and params, as Polyaxon 2.18 would, "
        "plus flowd's warnings.",
    )
    parser.add_argument("paths", nargs="+", metavar="PATH", help="Polyaxonfile(s) to check")
    parser.add_argument("--hub", metavar="DIR", default=None,
                        help="component hub directory for `hubRef` (default: $FLOWD_HUB)")
    parser.add_argument("--presets", metavar="DIR", default=None,
                        help="folder of named presets for `presets: [name]` (default: $FLOWD_PRESETS)")
    parser.add_argument("--output", "-o", choices=("text", "json"), default="text", help="output format")
    parser.add_argument("--param", "-P", action="append", default=[], metavar="NAME=VALUE",
                        help="a submission param, checked against the component's inputs (repeatable)")
    parser.add_argument("--reference-compat", action="store_true",
                        help="type params like Polyaxon 2.18 (datetime as a date, float and metric refs incompatible)")
    parser.add_argument("--no-snippets", action="store_true",
                        help="text output: do not show the offending source line under each finding")
    add_limit_args(parser)
    parser.set_defaults(func=run)
    return parser


def _item(d: Diagnostic, checked: str) -> dict[str, Any]:
    item: dict[str, Any] = {"location": d.location, "message": d.message}
    if d.line is not None:
        item["line"] = d.line
        item["column"] = d.column
    if d.path != checked:
        item["file"] = d.path
    return item


class _Snippets:
    """The offending source line under a finding, with a caret at the column (text output)."""

    def __init__(self) -> None:
        self._lines: dict[str, list[str] | None] = {}

    def render(self, d: Diagnostic) -> list[str]:
        if d.line is None:
            return []
        lines = self._lines.get(d.path, [])
        if lines == []:
            try:
                with open(d.path, encoding="utf-8") as fh:
                    lines = fh.read().splitlines()
            except (OSError, UnicodeDecodeError):
                lines = None
            self._lines[d.path] = lines
        if not lines or not 0 < d.line <= len(lines):
            return []
        text = lines[d.line - 1].rstrip()
        if len(text) > 160:
            return []
        col = max((d.column or 1) - 1, 0)
        return [f"    | {text}", f"    | {' ' * min(col, len(text))}^"]


def parse_params(items: list[str]) -> dict[str, str] | str:
    out: dict[str, str] = {}
    for item in items:
        name, sep, value = item.partition("=")
        if not sep or not name.strip():
            return f"--param expects NAME=VALUE, got {item!r}"
        out[name.strip()] = value
    return out


def run(args: argparse.Namespace) -> int:
    hub = args.hub if args.hub is not None else os.environ.get("FLOWD_HUB") or None
    if hub is not None and not os.path.isdir(hub):
        print(f"flowd check: error: --hub {hub!r} is not a directory", file=sys.stderr)
        return 2
    params = parse_params(args.param)
    if isinstance(params, str):
        print(f"flowd check: error: {params}", file=sys.stderr)
        return 2
    limits = limits_of(args)
    if isinstance(limits, str):
        print(f"flowd check: error: {limits}", file=sys.stderr)
        return 2
    results: list[tuple[str, CompileResult]] = []
    for path in args.paths:
        try:
            result = compile_path(path, hub=hub, params=params or None, reference_compat=args.reference_compat,
                                  limits=limits, presets=args.presets)
        except Exception as exc:  # noqa: BLE001 - a bug in flowd, not bad input: still no traceback for the user
            result = CompileResult(op=None, errors=[Diagnostic(
                path=path, location="", message=f"internal error while checking ({type(exc).__name__}: {exc}); "
                                                "please report it")])
        results.append((path, result))
    if args.output == "json":
        doc = {"files": [{"path": path, "valid": r.valid,
                          "errors": [_item(d, path) for d in r.errors],
                          "warnings": [_item(d, path) for d in r.warnings]} for path, r in results]}
        print(json.dumps(doc, indent=2))
    else:
        snippets = _Snippets()
        for path, r in results:
            for d in r.diagnostics:
                print(d.format())
                if not args.no_snippets:
                    for line in snippets.render(d):
                        print(line)
            status = "valid" if r.valid else "invalid"
            counts = f"{len(r.errors)} error(s), {len(r.warnings)} warning(s)"
            print(f"{path}: {status} ({counts})")
    return 0 if all(r.valid for _, r in results) else 1

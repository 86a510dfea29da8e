"""The ``flowd`` command line. Each sub-command lives in its own module and registers itself
through ``add_parser(subparsers)``; ``main`` only dispatches and maps exceptions to exit codes.

Exit codes shared by every sub-command: 0 success, 1 failure (invalid file, pipeline not
succeeded), 2 usage error or invalid spec where the command says so.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from typing import NoReturn

from flowd import __version__

# sub-command name -> module that provides add_parser(subparsers) and run(args) -> int
COMMANDS = {
    "check": "flowd.cli.check",
    "run": "flowd.cli.run",
    "serve": "flowd.cli.serve",
    "submit": "flowd.cli.submit",
    "status": "flowd.cli.status",
    "stop": "flowd.cli.stop",
    "approve": "flowd.cli.approve",
    "resume": "flowd.cli.resume",
    "events": "flowd.cli.events",
    "replay": "flowd.cli.replay",
    "logs": "flowd.cli.logs",
    "runs": "flowd.cli.runs",
    "rm": "flowd.cli.rm",
    "gc": "flowd.cli.gc",
    "graph": "flowd.cli.graph",
    "ui": "flowd.cli.ui",
}


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:  # usage errors exit 2, as argparse does, but briefly
        self.print_usage(sys.stderr)
        self.exit(2, f"{self.prog}: error: {message}\n")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="flowd", description="A container-native flow engine for Polyaxonfile DAGs.")
    parser.add_argument("--version", action="version", version=f"flowd {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    sub.required = True
    for module_name in COMMANDS.values():
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError as exc:
            if exc.name != module_name:
                raise
            continue
        module.add_parser(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    # logs go to stderr in every command: stdout is the command's output (one JSON document
    # with --output json); `flowd serve` reconfigures with its --log-level
    from flowd.cli.logsetup import configure_logging

    configure_logging("warning")
    try:
        return int(args.func(args) or 0)
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        return 1


def entry() -> NoReturn:
    """The ``flowd`` console script: :func:`main`, then :func:`flowd.procexit.exit_process`."""
    from flowd.procexit import exit_process

    exit_process(main())


if __name__ == "__main__":
    entry()

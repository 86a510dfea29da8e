"""The import direction STYLE.md asks for, checked on the source: the pure layers (spec, engine)
import no I/O library and no adapter, the spec layer never imports the engine, and the engine's
public surface is exactly what its __init__ names."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import flowd.engine

ROOT = Path(flowd.engine.__file__).resolve().parents[1]
IO_LIBRARIES = {"anyio", "asyncio", "aiokafka", "kubernetes_asyncio", "structlog", "prometheus_client",
                "socket", "subprocess", "urllib", "http", "time", "secrets", "uuid"}
ADAPTERS = {"flowd.daemon", "flowd.k8s", "flowd.runtime", "flowd.cli"}


def imports(package: str) -> dict[str, set[str]]:
    found: dict[str, set[str]] = {}
    for path in (ROOT / package).rglob("*.py"):
        names: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                names.update(alias.name for alias in node.names)
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                names.add(node.module)
        found[str(path.relative_to(ROOT))] = names
    return found


def offending(found: dict[str, set[str]], forbidden: set[str]) -> dict[str, list[str]]:
    return {
        module: sorted(n for n in names
                       if n.split(".")[0] in forbidden or any(n == f or n.startswith(f + ".") for f in forbidden))
        for module, names in found.items()
        if any(n.split(".")[0] in forbidden or any(n == f or n.startswith(f + ".") for f in forbidden) for n in names)
    }


def test_the_engine_does_no_io_and_knows_no_adapter():
    assert offending(imports("engine"), IO_LIBRARIES | ADAPTERS) == {}


def test_the_engine_draws_randomness_only_from_seeded_generators():
    """``random.Random(seed)`` with a seed from the event is deterministic; the module-level
    functions (``random.random()``, ``random.choice``...) draw from a hidden global state."""
    unseeded = []
    for path in (ROOT / "engine").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if (isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id == "random"
                    and node.attr != "Random"):
                unseeded.append(f"{path.name}:{node.lineno} random.{node.attr}")
            if (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == "Random"
                    and not node.args):
                unseeded.append(f"{path.name}:{node.lineno} Random() without a seed")
    assert unseeded == []


def test_the_spec_layer_knows_neither_engine_nor_adapters():
    # the spec layer reads reference files and urlRef URLs (its one allowed I/O), so only the
    # async/bus/cluster libraries and the upper layers are forbidden here
    forbidden = {"anyio", "aiokafka", "kubernetes_asyncio", "structlog", "prometheus_client", "flowd.engine"} | ADAPTERS
    assert offending(imports("spec"), forbidden) == {}


def test_the_engine_public_surface_is_pinned():
    assert sorted(flowd.engine.__all__) == sorted([
        "DONE", "STATUSES", "Approve", "CancelTimer", "Command", "Engine", "Event", "OpStatus", "OpView", "PipelineDone",
        "Resume", "RunView", "SetTimer", "StartOp", "StatusChanged", "Stop", "StopOp", "Submit", "TimerFired",
    ])
    for name in flowd.engine.__all__:
        assert getattr(flowd.engine, name) is not None


def test_adapters_use_only_the_engine_public_surface():
    """Adapters (daemon, Kubernetes, local runtime, CLI) import ``flowd.engine`` and nothing
    below it, so the engine's internals can change without touching them."""
    internal = {}
    for package in ("daemon", "k8s", "runtime", "cli"):
        for module, names in imports(package).items():
            bad = sorted(n for n in names if n.startswith("flowd.engine."))
            if bad:
                internal[module] = bad
    assert internal == {}


def named_imports(source: str, modules: set[str]) -> set[str]:
    """The modules of ``modules`` that ``source`` names in any import statement: at the top,
    inside a function, and under ``if TYPE_CHECKING:`` alike. ``from pkg import x`` names the
    submodule ``pkg.x`` when there is one, the package otherwise."""
    targets: set[str] = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            targets.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            for alias in node.names:
                sub = f"{node.module}.{alias.name}"
                targets.add(sub if sub in modules else node.module)
    return targets & modules


def import_graph(package: str) -> dict[str, set[str]]:
    """flowd.<package>.* module -> the modules of the same package it imports. Imports under
    ``TYPE_CHECKING`` count: a type-only import back is still a dependency of the design (each
    module's types name the other's classes), and it is exactly how the old engine mixins and
    the daemon's parts hid their cycles. Imports inside functions count too: deferring an import
    hides a cycle from Python, not from the reader."""

    def name_of(path: Path) -> str:
        parts = list(path.relative_to(ROOT.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        return ".".join(parts)

    paths = {name_of(path): path for path in (ROOT / package).rglob("*.py")}
    return {module: named_imports(path.read_text(), set(paths)) - {module} for module, path in paths.items()}


def cycles(graph: dict[str, set[str]]) -> list[str]:
    found: list[str] = []
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def visit(module: str) -> None:
        state[module] = 1
        path.append(module)
        for target in sorted(graph.get(module, ())):
            if state.get(target) == 1:
                found.append(" -> ".join([*path[path.index(target):], target]))
            elif target not in state:
                visit(target)
        path.pop()
        state[module] = 2

    for module in sorted(graph):
        if module not in state:
            visit(module)
    return found


@pytest.mark.parametrize("package", ["engine", "daemon", "spec", "runtime", "k8s", "cli", "ui", "artifacts"])
def test_modules_import_one_way(package):
    """No cycle among a package's modules: each part gets what it needs handed in (the engine:
    a ``Step``, the parts below it, a callable for the one call that goes back up; the daemon:
    a ``PartitionContext``, ``Effects``, callables), never an import of the module that
    imports it."""
    graph = import_graph(package)
    assert graph
    assert cycles(graph) == []


def test_the_engine_is_split_by_concept():
    graph = import_graph("engine")
    assert "flowd.engine.core" in graph and "flowd.engine.ops" in graph


def test_the_daemon_parts_do_not_know_the_daemon():
    """serve.py builds the daemon's parts and hands each the narrow interface it needs: no part
    imports serve.py back."""
    graph = import_graph("daemon")
    assert sorted(m for m, deps in graph.items() if "flowd.daemon.serve" in deps) == []


def test_the_cycle_finder_finds_a_cycle():
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": set()}) == ["a -> b -> c -> a"]


def test_the_import_graph_sees_every_kind_of_import():
    """The cycle check above would be blind if it missed an import under TYPE_CHECKING or
    inside a function."""
    modules = {"flowd.engine.a", "flowd.engine.b", "flowd.engine.c", "flowd.engine"}
    source = (
        "from typing import TYPE_CHECKING\n"
        "from flowd.engine import a\n"
        "if TYPE_CHECKING:\n"
        "    from flowd.engine.b import Thing\n"
        "def f():\n"
        "    import flowd.engine.c\n"
    )
    assert named_imports(source, modules) == {"flowd.engine.a", "flowd.engine.b", "flowd.engine.c"}
    assert named_imports("from flowd.engine import Engine\n", modules) == {"flowd.engine"}
    graph = import_graph("engine")
    assert "flowd.engine.tuners.hyperband" in graph["flowd.engine.tuners"]  # imported inside a function

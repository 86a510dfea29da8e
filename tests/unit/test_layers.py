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


def module_graph(package: str) -> dict[str, set[str]]:
    """``flowd.<package>`` module -> the modules of the same package it imports, anywhere in
    its source (imports under TYPE_CHECKING and inside functions count too: a cycle hidden
    there is still two modules that cannot be understood one without the other)."""
    prefix = f"flowd.{package}"
    modules = {f"{prefix}.{p.stem}" if p.stem != "__init__" else prefix: p for p in (ROOT / package).glob("*.py")}
    graph: dict[str, set[str]] = {}
    for name, path in modules.items():
        deps: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                deps.update(a.name for a in node.names if a.name in modules)
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                if node.module in modules and node.module != prefix:
                    deps.add(node.module)
                # ``from flowd.daemon import wire`` names a module, not the package
                deps.update(f"{node.module}.{a.name}" for a in node.names if f"{node.module}.{a.name}" in modules)
        deps.discard(name)
        graph[name] = deps - {prefix}
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    found, done = [], set()

    def visit(node: str, trail: list[str]) -> None:
        if node in trail:
            found.append(trail[trail.index(node):] + [node])
            return
        if node in done:
            return
        for dep in sorted(graph.get(node, ())):
            visit(dep, [*trail, node])
        done.add(node)

    for node in sorted(graph):
        visit(node, [])
    return found


@pytest.mark.parametrize("package", ["daemon", "spec", "runtime", "k8s", "cli", "ui"])
def test_modules_import_one_way(package):
    assert cycles(module_graph(package)) == []


def test_the_daemon_parts_do_not_know_the_daemon():
    """serve.py builds the daemon's parts and hands each the narrow interface it needs (a
    PartitionContext, Effects, callables): no part imports serve.py back."""
    graph = module_graph("daemon")
    assert sorted(m for m, deps in graph.items() if "flowd.daemon.serve" in deps) == []


def test_the_cycle_finder_finds_a_cycle():
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": set()}) == [["a", "b", "c", "a"]]

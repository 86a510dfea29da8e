"""The import direction STYLE.md asks for, checked on the source: the pure layers (spec, engine)
import no I/O library and no adapter, the spec layer never imports the engine, and the engine's
public surface is exactly what its __init__ names."""

from __future__ import annotations

import ast
from pathlib import Path

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

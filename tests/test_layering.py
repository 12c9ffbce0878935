"""Imports go downward only (DESIGN.md): neither the medsynth sub-packages nor the modules inside
them import each other in a cycle. Every import counts, lazy ones inside functions too."""

from __future__ import annotations

import ast
from pathlib import Path

import networkx as nx

PACKAGE = Path(__file__).resolve().parents[1] / "medsynth"


def _module_name(path: Path) -> str:
    return ".".join(path.relative_to(PACKAGE.parent).with_suffix("").parts).removesuffix(".__init__")


def module_graph() -> nx.DiGraph:
    """medsynth module -> medsynth modules it imports (``from pkg import name`` counts pkg.name when
    that is a module)."""
    paths = sorted(PACKAGE.rglob("*.py"))
    modules = {_module_name(p) for p in paths}
    graph = nx.DiGraph()
    for path in paths:
        source = _module_name(path)
        graph.add_node(source)
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            names: list[str] = []
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                names = [node.module] + [f"{node.module}.{alias.name}" for alias in node.names]
            for name in names:
                if name in modules and name != source:
                    graph.add_edge(source, name)
    return graph


def _unit(module: str) -> str:
    """``medsynth.sampling.generate`` -> ``sampling``; top-level modules (cli, train, ...) stand alone."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else parts[0]


def _describe(cycles: list[list[str]]) -> str:
    return "\n".join(" -> ".join([*c, c[0]]) for c in cycles[:10])


def test_modules_import_without_cycles():
    cycles = list(nx.simple_cycles(module_graph()))
    assert not cycles, "import cycles between medsynth modules:\n" + _describe(cycles)


def test_subpackages_import_without_cycles():
    units = nx.DiGraph()
    for a, b in module_graph().edges:
        if _unit(a) != _unit(b):
            units.add_edge(_unit(a), _unit(b))
    cycles = list(nx.simple_cycles(units))
    assert not cycles, "import cycles between medsynth sub-packages:\n" + _describe(cycles)
    assert not units.has_edge("models", "sampling")

"""The package's shape: no import cycles between asrkit modules, and names that mean
one thing whatever was imported first."""

from __future__ import annotations

import ast
import importlib.util
import pkgutil
import subprocess
import sys
from pathlib import Path

import pytest

import asrkit

ROOT = Path(asrkit.__file__).parent


def _modules() -> dict[str, Path]:
    """Every asrkit module by dotted name (packages by their ``__init__.py``)."""
    found = {"asrkit": ROOT / "__init__.py"}
    for info in pkgutil.walk_packages([str(ROOT)], prefix="asrkit."):
        spec = importlib.util.find_spec(info.name)
        found[info.name] = Path(spec.origin)
    return found


def _resolve(module: str, is_package: bool, node: ast.ImportFrom) -> str:
    """The absolute module an ``ImportFrom`` names (relative levels resolved)."""
    if node.level == 0:
        return node.module or ""
    parts = module.split(".")
    base = parts if is_package else parts[:-1]
    base = base[:len(base) - (node.level - 1)]
    return ".".join(base + ([node.module] if node.module else []))


def _targets(name: str, known: set[str]) -> set[str]:
    """The asrkit module ``name`` refers to: itself, or the nearest enclosing module
    (``asrkit.audio.load_audio`` → ``asrkit.audio``)."""
    while name and name not in known:
        name = name.rpartition(".")[0]
    return {name} if name else set()


def import_graph(modules: dict[str, Path]) -> dict[str, set[str]]:
    """module → the asrkit modules it imports, at module level or inside functions.

    ``from pkg import name`` counts as importing ``pkg.name`` when that is a module,
    else ``pkg``. Importing a submodule runs its parents' ``__init__`` first, but that
    is no edge: only import statements are.
    """
    known = set(modules)
    graph: dict[str, set[str]] = {}
    for module, path in modules.items():
        is_package = path.name == "__init__.py"
        edges: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
            if isinstance(node, ast.Import):
                for alias in node.names:
                    edges |= _targets(alias.name, known)
            elif isinstance(node, ast.ImportFrom):
                base = _resolve(module, is_package, node)
                for alias in node.names:
                    full = f"{base}.{alias.name}"
                    edges |= {full} if full in known else _targets(base, known)
        edges.discard(module)
        graph[module] = edges
    return graph


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One cycle of ``graph`` as ``[a, b, ..., a]``, or None (depth-first search)."""
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        path.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                return path[path.index(nxt):] + [nxt]
            if nxt not in state and (cycle := visit(nxt)):
                return cycle
        path.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state and (cycle := visit(node)):
            return cycle
    return None


def test_no_import_cycles_between_asrkit_modules():
    modules = _modules()
    assert {"asrkit.decoding.beam", "asrkit.search.query", "asrkit.shard"} <= set(modules)
    cycle = find_cycle(import_graph(modules))
    assert cycle is None, "import cycle: " + " -> ".join(cycle)


def test_the_cycle_finder_sees_function_level_and_relative_imports(tmp_path):
    """The checker itself: a cycle closed by a lazy relative import is found."""
    pkg = tmp_path / "pkg"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "a.py").write_text("from .b import thing\n")
    (pkg / "b.py").write_text("def thing():\n    from . import a\n    return a\n")
    modules = {"pkg": pkg / "__init__.py", "pkg.a": pkg / "a.py", "pkg.b": pkg / "b.py"}
    assert find_cycle(import_graph(modules)) == ["pkg.a", "pkg.b", "pkg.a"]
    (pkg / "b.py").write_text("import os\n")
    assert find_cycle(import_graph(modules)) is None


ORDERS = {
    "package first": "import asrkit\nfrom asrkit.search import query\n",
    "subpackage first": "from asrkit.search import query\nimport asrkit\n",
    "function first": "import asrkit\nasrkit.search_index\nfrom asrkit.search import query\n",
}
CHECK = """
import inspect, types
assert isinstance(asrkit.search, types.ModuleType), type(asrkit.search)
assert inspect.isfunction(asrkit.search_index), type(asrkit.search_index)
assert asrkit.search_index is query.search
assert asrkit.search.query is query
"""


@pytest.mark.parametrize("order", sorted(ORDERS))
def test_search_subpackage_and_search_function_are_unambiguous(order):
    """``asrkit.search`` is the subpackage and ``asrkit.search_index`` the function,
    whichever is reached first (each order in a fresh interpreter)."""
    done = subprocess.run([sys.executable, "-c", ORDERS[order] + CHECK],
                          capture_output=True, text=True)
    assert done.returncode == 0, done.stderr

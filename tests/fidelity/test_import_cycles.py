"""The firmware's modules import one another without a cycle, function-local imports included.

A cycle (app.main importing app.uplink.service, which imported app.main back for a helper)
ties parts together that are meant to be built from their collaborators, and on MicroPython
a cycle through module-level imports fails half-way, leaving a module without the names it
was still to define. Every import statement is read with `ast`, wherever it is (module level,
a function, a class, a try block), and resolved to a firmware module: `from app import x`
names app.x when that is a module, else app; a package's own __init__ is not an edge of its
submodules (importing a submodule always runs it). The checker is tried on a made-up package
with a cycle first, so that a checker that finds nothing cannot pass.
"""

from __future__ import annotations

import ast
from pathlib import Path

FIRMWARE = Path(__file__).resolve().parents[2] / "firmware"


def modules(root: Path) -> dict[str, Path]:
    """Dotted module name -> source, for every module under ``root``."""
    out = {}
    for path in sorted(root.rglob("*.py")):
        if "__pycache__" in path.parts:
            continue
        parts = list(path.relative_to(root).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        if parts:
            out[".".join(parts)] = path
    return out


def _resolve(name: str, known: dict[str, Path]) -> str | None:
    while name and name not in known:
        name = name.rpartition(".")[0]
    return name or None


def import_graph(root: Path) -> dict[str, set[str]]:
    """Module -> the firmware modules it imports anywhere in its source."""
    known = modules(root)
    graph: dict[str, set[str]] = {name: set() for name in known}
    for name, path in known.items():
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
            if isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    anchor = package
                    for _ in range(node.level - 1):
                        anchor = anchor.rpartition(".")[0]
                    base = anchor + ("." + base if base else "")
                targets = [base + "." + alias.name for alias in node.names]
            else:
                continue
            for target in targets:
                found = _resolve(target, known)
                if found and found != name and not name.startswith(found + "."):
                    graph[name].add(found)
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Each cycle once, as the list of modules along it (the first repeated at the end)."""
    found: list[list[str]] = []
    seen: set[frozenset[str]] = set()
    state: dict[str, int] = {}  # 1 on the current path, 2 done

    def visit(node: str, path: list[str]) -> None:
        state[node] = 1
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                cycle = path[path.index(nxt):] + [nxt]
                if frozenset(cycle) not in seen:
                    seen.add(frozenset(cycle))
                    found.append(cycle)
            elif nxt not in state:
                visit(nxt, path + [nxt])
        state[node] = 2

    for node in sorted(graph):
        if node not in state:
            visit(node, [node])
    return found


def test_the_checker_finds_a_cycle_through_a_function_local_import(tmp_path):
    pkg = tmp_path / "app"
    (pkg / "uplink").mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    (pkg / "uplink" / "__init__.py").write_text("")
    (pkg / "main.py").write_text("from app.uplink.service import Uplink\n")
    (pkg / "uplink" / "service.py").write_text(
        "class Uplink:\n    def done(self):\n        from app.main import unload\n")
    (pkg / "helper.py").write_text("from . import main\n")
    assert cycles(import_graph(tmp_path)) == [["app.main", "app.uplink.service", "app.main"]]
    # `from app import unload` (a name in the package, not a module) is no edge to app.main.
    (pkg / "uplink" / "service.py").write_text(
        "class Uplink:\n    def done(self):\n        from app import unload\n")
    assert cycles(import_graph(tmp_path)) == []


def test_the_firmware_has_no_import_cycle():
    graph = import_graph(FIRMWARE)
    assert "app.uplink.service" in graph and "app.main" in graph, sorted(graph)
    assert "app.uplink.service" in graph["app.main"]  # function-local imports are seen
    found = cycles(graph)
    assert found == [], "import cycles: " + "; ".join(" -> ".join(c) for c in found)

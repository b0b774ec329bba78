"""ARCHITECTURE.md names every module, the package boundaries of DESIGN.md hold, and no
modules import each other in a cycle."""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("cluster", "serve", "loadtest", "benchmarks", "sim")


def modules() -> list[Path]:
    return sorted(p.relative_to(ROOT) for pkg in PACKAGES for p in (ROOT / pkg).rglob("*.py")
                  if p.name != "__init__.py")


def imports(path: Path) -> set[str]:
    tree = ast.parse((ROOT / path).read_text())
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(a.name.split(".")[0] for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module.split(".")[0])
    return names


def test_every_module_has_its_line():
    text = (ROOT / "ARCHITECTURE.md").read_text()
    missing = [str(m) for m in modules() if f"`{m}`" not in text]
    assert not missing, f"add these to ARCHITECTURE.md: {missing}"


def test_cluster_never_imports_serve_and_loadtest_imports_neither():
    for m in modules():
        used = imports(m)
        if m.parts[0] == "cluster":
            assert not used & {"serve", "sim"}, m
        if m.parts[0] == "loadtest":
            assert not used & {"serve", "cluster", "sim"}, m
        if m.parts[0] == "serve":  # the simulator is built on the product, not in it
            assert "sim" not in used, m


def module_names() -> dict[str, Path]:
    """Dotted name -> file of every module of the project's packages (a package by its
    `__init__.py`)."""
    names = {}
    for pkg in PACKAGES:
        for path in (ROOT / pkg).rglob("*.py"):
            parts = path.relative_to(ROOT).with_suffix("").parts
            names[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return names


def imported_modules(path: Path, known: dict[str, Path]) -> set[str]:
    """The project modules `path` imports anywhere: at the top, inside functions, or only for
    type checking (a cycle of those still ties the modules together)."""
    def resolve(name: str) -> str | None:
        while name and name not in known:
            name = name.rpartition(".")[0]
        return name or None

    found: set[str | None] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found.update(resolve(a.name) for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            # `from pkg import mod` imports the module pkg.mod; `from mod import name`, mod
            found.update(resolve(f"{node.module}.{a.name}") for a in node.names)
    return {m for m in found if m is not None}


def cycles(graph: dict[str, set[str]]) -> Iterator[list[str]]:
    """The strongly connected components of more than one module (Tarjan's algorithm)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()

    def visit(v: str) -> Iterator[list[str]]:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph[v]):
            if w not in index:
                yield from visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                yield sorted(component)

    for v in sorted(graph):
        if v not in index:
            yield from visit(v)


def test_no_import_cycles():
    known = module_names()
    graph = {m: imported_modules(path, known) - {m} for m, path in known.items()}
    found = list(cycles(graph))
    assert not found, f"modules that import each other in a cycle: {found}"


def test_a_cycle_is_found():
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}, "e": set()}
    assert list(cycles(graph)) == [["a", "b", "c"]]


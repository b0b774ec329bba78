"""ARCHITECTURE.md names every module, and the package boundaries of DESIGN.md hold."""

from __future__ import annotations

import ast
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

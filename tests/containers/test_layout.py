"""The trust boundary depends on the contract below it, never on the parts built on top of it."""

from __future__ import annotations

import ast
from pathlib import Path

import orchestrator.containers

ABOVE = ("orchestrator.generators", "orchestrator.evolution", "orchestrator.runs",
         "orchestrator.cli")


def imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(), str(path))
    found = {alias.name for node in ast.walk(tree) if isinstance(node, ast.Import)
             for alias in node.names}
    found |= {node.module for node in ast.walk(tree)
              if isinstance(node, ast.ImportFrom) and node.module}
    return found


def test_the_containers_package_imports_nothing_from_the_parts_above_it():
    folder = Path(orchestrator.containers.__file__).parent
    wrong = {f"{path.name}: {name}" for path in sorted(folder.glob("*.py"))
             for name in imports(path) if name.startswith(ABOVE)}
    assert wrong == set()

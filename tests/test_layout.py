"""The layout is the architecture: which part may import which, checked on the source.

Every import counts, the lazy ones inside functions too: a lazy import is still a dependency.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PARTS = ("evolution", "runs", "generators", "containers", "cluster", "cli")


def _module(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports(path: Path) -> set[str]:
    """Every module ``path`` imports, absolute, at any depth of its code."""
    tree = ast.parse(path.read_text())
    package = _module(path) if path.name == "__init__.py" else _module(path).rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                up = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(up + ([node.module] if node.module else []))
            found.add(base)
            found |= {f"{base}.{alias.name}" for alias in node.names}
    return found


SOURCES = {_module(p): p for p in sorted((ROOT / "orchestrator").rglob("*.py"))}
IMPORTS = {name: _imports(path) for name, path in SOURCES.items()}


def _part(module: str) -> str:
    """``orchestrator.evolution.loop`` → ``evolution``; a contract module → ``contract``."""
    parts = module.split(".")
    return parts[1] if len(parts) >= 2 and parts[1] in PARTS else "contract"


def _hits(module: str, forbidden: tuple[str, ...]) -> set[str]:
    return {i for i in IMPORTS[module] if any(i == f or i.startswith(f + ".") for f in forbidden)}


def _own(module: str) -> set[str]:
    """The orchestrator modules ``module`` depends on (names that are modules, not members)."""
    return {i for i in IMPORTS[module] if i in SOURCES and i != module}


ALLOWED = {
    "contract": set(),
    "containers": {"contract"},
    "generators": {"contract", "containers"},
    "runs": {"contract", "generators"},
    "evolution": {"contract", "generators", "runs"},
    "cluster": {"contract", "containers", "evolution"},
    "cli": {"contract", "containers", "generators", "runs", "evolution", "cluster", "cli"},
}
"""Which parts each part may import (besides itself): dependencies point one way, down."""


@pytest.mark.parametrize("module", sorted(SOURCES))
def test_a_part_imports_only_the_parts_below_it(module):
    part = _part(module)
    wrong = {i for i in _own(module) if _part(i) not in ALLOWED[part] | {part}}
    assert not wrong, f"{module} ({part}) imports {sorted(wrong)}"


def test_evolution_sees_runners_only_through_the_protocol():
    for module in (m for m in SOURCES if _part(m) == "evolution"):
        assert not _hits(module, ("docker", "orchestrator.containers")), module


def test_only_containers_talk_to_docker():
    for module in (m for m in SOURCES if _part(m) not in ("containers",)):
        assert not _hits(module, ("docker",)), f"{module} imports docker"


def test_the_self_generator_loads_no_model_itself():
    """selfgen.py imports neither Docker nor torch, directly or through another module: the
    factory hands it a completer."""
    seen, todo = set(), ["orchestrator.generators.selfgen"]
    while todo:
        module = todo.pop()
        if module in seen:
            continue
        seen.add(module)
        assert not _hits(module, ("docker", "torch", "transformers")), f"via {module}"
        todo += sorted(_own(module))


STORE = {"orchestrator.runs.store", "orchestrator.runs.schema"}
"""The store, and the tables and connection it opens (kept apart to keep the store short)."""


def test_the_store_is_the_only_module_that_speaks_sql():
    for module, path in SOURCES.items():
        if module in STORE:
            continue
        assert not _hits(module, ("sqlite3",)), module
        text = path.read_text()
        assert not re.search(r"\.(_?db)\.|\.execute\(", text), f"{module} reaches into the store"


def test_the_sandbox_and_the_programs_never_import_the_host():
    for path in [*(ROOT / "sandbox").rglob("*.py"), *(ROOT / "programs").rglob("*.py")]:
        assert not {i for i in _imports(path) if i.split(".")[0] == "orchestrator"}, path


def test_no_import_cycles():
    graph = {m: _own(m) for m in SOURCES}
    state: dict[str, int] = {}

    def visit(module: str, path: list[str]) -> None:
        state[module] = 1
        for dep in sorted(graph[module]):
            if state.get(dep) == 1:
                cycle = path[path.index(dep):] + [dep]
                pytest.fail("import cycle: " + " -> ".join(cycle))
            if dep not in state:
                visit(dep, path + [dep])
        state[module] = 2

    for module in sorted(graph):
        if module not in state:
            visit(module, [module])


def test_library_code_logs_instead_of_printing_or_taking_log_callables():
    for module, path in SOURCES.items():
        if _part(module) == "cli":
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Call) and getattr(node.func, "id", None) == "print":
                pytest.fail(f"{module}:{node.lineno} prints; log instead")
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                for arg in (*node.args.args, *node.args.kwonlyargs):
                    hint = ast.unparse(arg.annotation) if arg.annotation else ""
                    callable_ = not hint or "Callable" in hint  # a file or a path is not
                    assert not (arg.arg in ("log", "say") and callable_), \
                        f"{module}:{node.lineno} {node.name}({arg.arg}) takes a log callable"

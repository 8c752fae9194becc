"""Can split isolation run this evaluator? A static reading of the peer's evaluator and seed.

Split isolation runs the variant's program in its own container and lets only plain data cross.
Some evaluators depend on sharing more than that with the program; each such dependency is named
here, and the import refuses the problem with the reason (unless ``isolation = "shared"``):

* it passes callables or objects into the program (a lambda, one of its own functions or classes,
  an instance of its classes): they cannot cross as plain data;
* it reads the program as text (``open(program_path)``, ``read_text``, ``inspect.getsource``): it
  would read the stub, not the variant;
* it seeds a global random state the program then draws from without seeding it itself: the two
  no longer share a process, so the program would not see the seed;
* the program is not Python, or the evaluator compiles or runs another language.

The reading is conservative and static; the import's seed check (split against the peer's own
way) catches what it misses.
"""

from __future__ import annotations

import ast
from pathlib import Path

COMPILERS = {"gcc", "g++", "cc", "c++", "clang", "clang++", "rustc", "cargo", "nvcc", "javac",
             "java", "go", "julia", "node", "rscript", "ghc", "gfortran", "make", "cmake",
             "dotnet", "swiftc", "zig", "lean", "lake"}
SEEDERS = {"random.seed", "np.random.seed", "numpy.random.seed", "torch.manual_seed",
           "random.setstate", "np.random.set_state", "numpy.random.set_state"}
_LOADERS = {"load_program", "module_from_spec", "import_module", "__import__", "load_module",
            "load_source"}
_READERS = {"open", "read_text", "read_bytes", "getsource", "getsourcelines", "getfile",
            "findsource", "parse", "compile"}


def _name(node: ast.AST) -> str:
    """``a.b.c`` for an attribute chain, '' otherwise."""
    parts = []
    while isinstance(node, ast.Attribute):
        parts.append(node.attr)
        node = node.value
    if isinstance(node, ast.Name):
        parts.append(node.id)
        return ".".join(reversed(parts))
    return ""


def _mentions(node: ast.AST, names: set[str]) -> bool:
    for sub in ast.walk(node):
        if isinstance(sub, ast.Name) and sub.id in names:
            return True
        if isinstance(sub, ast.Attribute) and sub.attr in names:
            return True
    return False


def reasons(evaluator: Path, program: Path) -> list[str]:
    """Why split isolation cannot run ``evaluator`` against ``program`` (empty: it can)."""
    out: list[str] = []
    if program.suffix != ".py":
        out.append(f"the program {program.name} is not Python: split isolation serves Python "
                   "modules only")
    try:
        tree = ast.parse(evaluator.read_text(), filename=str(evaluator))
    except (SyntaxError, UnicodeDecodeError, OSError) as exc:
        return out + [f"the evaluator cannot be read: {exc}"]
    defs = {n.name for n in tree.body if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef))}
    classes = {n.name for n in ast.walk(tree) if isinstance(n, ast.ClassDef)}
    paths = {"program_path"}
    for top in tree.body:
        if isinstance(top, ast.FunctionDef) and top.name.startswith("evaluate") and top.args.args:
            paths.add(top.args.args[0].arg)
    modules = set()
    for node in ast.walk(tree):
        if (isinstance(node, ast.Assign) and isinstance(node.value, ast.Call)
                and _name(node.value.func).split(".")[-1] in _LOADERS):
            modules |= {t.id for t in node.targets if isinstance(t, ast.Name)}
    seeds = False
    for node in ast.walk(tree):
        if not isinstance(node, ast.Call):
            continue
        func = _name(node.func)
        last = node.func.attr if isinstance(node.func, ast.Attribute) else func.split(".")[-1]
        if last in _READERS and any(_mentions(arg, paths) for arg in node.args):
            out.append(f"line {node.lineno}: it reads the program as text ({func}(...)): in split "
                       "isolation it would read a stub, not the variant")
        elif isinstance(node.func, ast.Attribute) and last in _READERS and _mentions(
                node.func.value, paths):
            out.append(f"line {node.lineno}: it reads the program as text (.{last}()): in split "
                       "isolation it would read a stub, not the variant")
        if func in SEEDERS:
            seeds = True
        root = func.split(".")[0]
        if root in modules or (func == "getattr" and node.args and _name(node.args[0]) in modules):
            for arg in [*node.args, *(k.value for k in node.keywords)]:
                if _carries_code(arg, defs, classes):
                    out.append(f"line {node.lineno}: it passes a callable or an object into the "
                               f"program ({ast.unparse(arg)[:60]}): only plain data crosses")
        if last == "run_shinka_eval":
            for keyword in node.keywords:
                if keyword.arg == "get_experiment_kwargs" and isinstance(keyword.value, ast.Name):
                    out += _kwargs_carry_code(tree, keyword.value.id, defs, classes)
        if func.split(".")[0] in ("subprocess", "os") and last in (
                "run", "Popen", "call", "check_call", "check_output", "system", "popen"):
            for const in ast.walk(node):
                if isinstance(const, ast.Constant) and isinstance(const.value, str):
                    word = const.value.strip().split(" ")[0].rsplit("/", 1)[-1].lower()
                    if word in COMPILERS:
                        out.append(f"line {node.lineno}: it compiles or runs another language "
                                   f"({word}): split isolation serves Python modules only")
                        break
    if seeds and program.suffix == ".py" and _draws_unseeded(program):
        out.append("it seeds a global random state that the program draws from without seeding "
                   "it: in split isolation they no longer share a process")
    return sorted(set(out))


def _carries_code(node: ast.AST, defs: set[str], classes: set[str]) -> bool:
    for sub in ast.walk(node):
        if isinstance(sub, ast.Lambda):
            return True
        if isinstance(sub, ast.Name) and (sub.id in defs or sub.id in classes):
            return True
    return False


def _kwargs_carry_code(tree: ast.Module, function: str, defs: set[str],
                       classes: set[str]) -> list[str]:
    for node in tree.body:
        if isinstance(node, ast.FunctionDef) and node.name == function:
            for ret in ast.walk(node):
                if isinstance(ret, ast.Return) and ret.value is not None and _carries_code(
                        ret.value, defs, classes):
                    return [f"line {ret.lineno}: {function} passes a callable or an object into "
                            "the program: only plain data crosses"]
    return []


def _draws_unseeded(program: Path) -> bool:
    """Whether the program calls the global ``random``/``np.random`` functions and never seeds
    them itself."""
    try:
        tree = ast.parse(program.read_text())
    except (SyntaxError, UnicodeDecodeError, OSError):
        return False
    draws = seeds = False
    for node in ast.walk(tree):
        if isinstance(node, ast.Call):
            func = _name(node.func)
            if func in SEEDERS:
                seeds = True
            elif func.startswith(("random.", "np.random.", "numpy.random.")) and not func.endswith(
                    ("default_rng", "RandomState", "Generator", "Random", "SystemRandom")):
                draws = True
    return draws and not seeds

"""Expression holes: the statements whose right-hand side the ``self`` model may rewrite.

A *site* is one single-line statement inside a function whose value is arithmetic (``x = ...``,
``x += ...``, ``return ...`` with a number or an operator in it, and no string, subscript,
keyword argument or literal container): learning-rate schedules, loss averages, widths, budgets.
The model rewrites the value under ``sandbox.pyexpr``'s grammar using only the site's *names*:
the dotted names of the old value, the function's parameters that its other arithmetic
values use, the names the function set
earlier from arithmetic of their own, the module's numeric UPPERCASE constants, and ``min``,
``max``, ``abs``. Every name is therefore defined where it is used, and most of them hold
numbers, so a rewritten value tends to run rather than fail on a type.
"""

from __future__ import annotations

import ast
from dataclasses import dataclass

BUILTINS = {"min": "2+", "max": "2+", "abs": "1"}
"""Functions any site may call, with their arity (``sandbox.pyexpr``'s notation)."""
NUMERIC_CALLS = ("min", "max", "abs", "float", "int", "round")
NUMERIC_MODULES = ("math", "time")
"""A site's value calls only these builtins and these modules' functions: a value that calls a
tensor's method or builds a module is shape and type logic, where a rewrite seldom runs."""
_NOT_ARITHMETIC = (ast.Subscript, ast.keyword, ast.Lambda, ast.Starred, ast.Dict, ast.Set,
                   ast.List, ast.Tuple, ast.ListComp, ast.SetComp, ast.DictComp,
                   ast.GeneratorExp, ast.JoinedStr, ast.NamedExpr, ast.Await, ast.Yield)


@dataclass(frozen=True)
class Site:
    """One value the model may rewrite: ``line`` (0-based), its columns ``start..end``."""

    line: int
    start: int
    end: int
    text: str
    """The value as it is."""
    names: tuple[str, ...]
    """The names (dotted ones as single words) a new value may use; a function's name ends in
    ``(`` and its arity (``max(2+``, ``abs(1``): it may only be called, that way."""


def sites(source: str) -> list[Site]:
    """The expression holes of a Python file, in source order ([] when it does not parse)."""
    try:
        tree = ast.parse(source)
    except (SyntaxError, ValueError):
        return []
    lines = source.split("\n")
    constants = _numeric_constants(tree)
    out = []
    for func in ast.walk(tree):
        if not isinstance(func, ast.FunctionDef | ast.AsyncFunctionDef):
            continue
        statements = [(node, value) for node in sorted(_statements(func), key=lambda n: n.lineno)
                      if (value := _value(node)) is not None and arithmetic(value)]
        # parameters the function does arithmetic with (not its tensors, modules, strings)
        used = {w for _node, value in statements for w in dotted(value)}
        params = [a.arg for a in (*func.args.posonlyargs, *func.args.args,
                                  *func.args.kwonlyargs) if a.arg in used]
        earlier: list[tuple[int, str]] = []  # (line, name) of arithmetic locals
        for node, value in statements:
            site = _site(node, value, lines, params, [n for at, n in earlier
                                                      if at < node.lineno], constants)
            if site is not None:
                out.append(site)
            target = getattr(node, "target", None) or (node.targets[0] if isinstance(
                node, ast.Assign) and len(node.targets) == 1 else None)
            if isinstance(target, ast.Name):
                earlier.append((node.lineno, target.id))
    return sorted(out, key=lambda s: (s.line, s.start))


def arithmetic(value: ast.expr) -> bool:
    """A value with a number or an arithmetic operator in it, and nothing the hole's language
    would have no use for (strings, subscripts, keyword arguments, containers)."""
    nodes = list(ast.walk(value))
    if any(isinstance(n, _NOT_ARITHMETIC) for n in nodes):
        return False
    if any(isinstance(n, ast.Constant) and isinstance(n.value, str | bytes) for n in nodes):
        return False
    if not all(_numeric_call(n) for n in nodes if isinstance(n, ast.Call)):
        return False
    return any(isinstance(n, ast.BinOp) or (isinstance(n, ast.Constant) and isinstance(
        n.value, int | float) and not isinstance(n.value, bool)) for n in nodes)


def same(a: str, b: str) -> bool:
    """Whether two values are the same expression (spacing and redundant brackets aside)."""
    try:
        return ast.dump(ast.parse(a.strip(), mode="eval")) == \
            ast.dump(ast.parse(b.strip(), mode="eval"))
    except (SyntaxError, ValueError):
        return False


def dotted(value: ast.expr) -> list[str]:
    """The names a value reads, a chain ``a.b.c`` as one word."""
    bases = {id(n.value) for n in ast.walk(value) if isinstance(n, ast.Attribute)}
    out = []
    for node in ast.walk(value):
        if id(node) in bases:
            continue
        if isinstance(node, ast.Name) or (isinstance(node, ast.Attribute) and _chain(node)):
            word = ast.unparse(node)
            if word not in out:
                out.append(word)
    return out


def _called(value: ast.expr) -> dict[str, str]:
    """The functions a value calls, each with the arity it is called with here (``2+`` for
    ``min``/``max``: any count from two)."""
    out = {}
    for n in ast.walk(value):
        if isinstance(n, ast.Call):
            name = ast.unparse(n.func)
            out[name] = BUILTINS.get(name, "1" if name in ("float", "int", "round")
                                     else str(len(n.args)))
    return out


def _numeric_call(call: ast.Call) -> bool:
    func = call.func
    if isinstance(func, ast.Name):
        return func.id in NUMERIC_CALLS
    return isinstance(func, ast.Attribute) and isinstance(func.value, ast.Name) and \
        func.value.id in NUMERIC_MODULES


def _chain(node: ast.expr) -> bool:
    while isinstance(node, ast.Attribute):
        node = node.value
    return isinstance(node, ast.Name)


def _statements(func: ast.AST) -> list[ast.stmt]:
    """The statements of a function, nested blocks included, nested functions left out."""
    out: list[ast.stmt] = []
    todo = list(getattr(func, "body", []))
    while todo:
        node = todo.pop()
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
            continue
        out.append(node)
        for key in ("body", "orelse", "finalbody"):
            todo.extend(getattr(node, key, []) or [])
        for handler in getattr(node, "handlers", []) or []:
            todo.extend(handler.body)
    return out


def _value(node: ast.stmt) -> ast.expr | None:
    if isinstance(node, ast.Assign) and len(node.targets) == 1 and \
            isinstance(node.targets[0], ast.Name | ast.Attribute):
        return node.value
    if isinstance(node, ast.AugAssign | ast.AnnAssign) and \
            isinstance(node.target, ast.Name | ast.Attribute):
        return node.value
    if isinstance(node, ast.Return):
        return node.value
    return None


def _site(node: ast.stmt, value: ast.expr, lines: list[str], params: list[str],
          earlier: list[str], constants: list[str]) -> Site | None:
    if value.lineno != value.end_lineno or value.end_col_offset is None:
        return None
    line = lines[value.lineno - 1]
    if not line.isascii():  # ast columns count UTF-8 bytes; ASCII keeps them characters
        return None
    rest = line[value.end_col_offset:].strip()
    if rest and not rest.startswith("#"):
        return None
    target = getattr(node, "target", None)
    own = [target.id] if isinstance(node, ast.AugAssign) and isinstance(target, ast.Name) else []
    names: list[str] = []
    called = _called(value) | dict(BUILTINS)
    for name in (*dotted(value), *params, *earlier, *own, *constants, *BUILTINS):
        name = f"{name}({called[name]}" if name in called else name
        if name not in names:
            names.append(name)
    return Site(value.lineno - 1, value.col_offset, value.end_col_offset,
                line[value.col_offset : value.end_col_offset], tuple(names))


def _numeric_constants(tree: ast.Module) -> list[str]:
    out = []
    for node in tree.body:
        if isinstance(node, ast.Assign) and len(node.targets) == 1 and \
                isinstance(node.targets[0], ast.Name) and node.targets[0].id.isupper():
            value = node.value
            if isinstance(value, ast.UnaryOp) and isinstance(value.op, ast.USub):
                value = value.operand
            if isinstance(value, ast.Constant) and isinstance(value.value, int | float) and \
                    not isinstance(value.value, bool):
                out.append(node.targets[0].id)
    return out

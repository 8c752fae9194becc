"""The search-space convention: UPPERCASE module-level constants that declare their range.

::

    LEARNING_RATE = 1e-3  # search: log[1e-4, 3e-2]
    N_LAYER = 2  # search: int[1, 6]
    HEAD_DIM = 32  # search: choice[16, 32, 64]
    ACTIVATION = "gelu"  # search: choice[gelu, relu, silu]
    WEIGHT_DECAY = 0.1  # search: float[0, 0.3]
    AUTOCAST_BF16 = True  # search: choice[True, False] gpu

A trailing ``gpu`` marks a setting that only matters on a GPU: on a run whose slots have no GPU,
generators leave it alone (changing it there would only spend an evaluation on the same program).

Settings are found with ``ast`` and changed by rewriting only the literal's source span, so the
file keeps its formatting and comments. A constant without a declaration is a *fixed* setting
unless generic moves are asked for (halve or double a positive number).
"""

from __future__ import annotations

import ast
import math
import random
import re
from dataclasses import dataclass
from typing import Any

_DECL = re.compile(r"#\s*search:\s*(log|int|float|choice)\s*\[(.*?)\](\s*gpu\b)?")
_LITERALS = {"True": True, "False": False, "None": None}

Value = int | float | str | bool | None
"""What a setting holds: a literal (``None`` only among a choice's options)."""


@dataclass(frozen=True)
class Setting:
    """One changeable constant and where its literal sits in the file."""

    path: str
    name: str
    value: Value
    kind: str
    """``log``, ``int``, ``float``, ``choice``, or ``generic`` (undeclared)."""
    args: tuple[Any, ...]
    """A choice's options; ``(low, high)`` as floats for log, int and float; empty for generic."""
    line: int
    """0-based line of the literal."""
    start: int
    end: int
    """Character columns of the literal on that line."""
    quote: str = '"'
    source: str = ""
    """The literal as written, e.g. ``1e-3``: new values keep its notation."""
    gpu: bool = False
    """Declared ``gpu``: it only changes what the program does on a GPU."""


def find_settings(path: str, text: str, *, undeclared: bool = False) -> list[Setting]:
    """The settings of one Python file (declared ones, plus numeric undeclared ones if asked)."""
    try:
        tree = ast.parse(text)
    except (SyntaxError, ValueError):
        return []
    lines = text.split("\n")
    found = []
    for node in tree.body:
        if not (isinstance(node, ast.Assign) and len(node.targets) == 1):
            continue
        target, value = node.targets[0], node.value
        if not (isinstance(target, ast.Name) and target.id.isupper()):
            continue
        literal = _literal(value)
        if literal is None or value.lineno != value.end_lineno:
            continue
        line = lines[value.lineno - 1]
        raw = line.encode()
        start = len(raw[: value.col_offset].decode())
        end = len(raw[: value.end_col_offset].decode())
        decl = _DECL.search(line[end:])
        quote = line[start] if isinstance(literal, str) else '"'
        if decl:
            kind, args = decl.group(1), _parse_args(decl.group(1), decl.group(2))
            if kind != "choice" and not isinstance(literal, int | float):
                continue  # a numeric range on a string: no number to move
        elif undeclared and isinstance(literal, int | float) and not isinstance(literal, bool):
            if literal <= 0:
                continue
            kind, args = "generic", ()
        else:
            continue
        if args is not None:
            found.append(Setting(path, target.id, literal, kind, args, value.lineno - 1,
                                 start, end, quote, line[start:end],
                                 bool(decl and decl.group(3))))
    return found


def for_device(settings: list[Setting], gpus: int | None) -> list[Setting]:
    """The settings worth changing on a run with ``gpus`` GPUs per variant (None: not known).

    With no GPU the ``gpu`` settings are left out, unless nothing else is left: then they are
    all there is to change.
    """
    if gpus is None or gpus > 0:
        return settings
    return [s for s in settings if not s.gpu] or settings


def _literal(node: ast.expr) -> int | float | str | bool | None:
    """The constant ``node`` writes, or None when it is no such literal (``X = None`` is not a
    setting: it has nothing to move)."""
    if isinstance(node, ast.Constant) and isinstance(node.value, int | float | str | bool):
        return node.value
    if (isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub)
            and isinstance(node.operand, ast.Constant)
            and isinstance(node.operand.value, int | float)):
        return -node.operand.value
    return None


def _parse_args(kind: str, body: str) -> tuple[Value, ...] | None:
    items = [item.strip().strip("'\"") for item in body.split(",") if item.strip()]
    if kind == "choice":
        return tuple(_token(item) for item in items) if len(items) >= 2 else None
    try:
        low, high = (float(x) for x in items)
    except ValueError:
        return None
    if low >= high or (kind == "log" and low <= 0):
        return None
    return (low, high)


def _token(item: str) -> Value:
    if item in _LITERALS:
        return _LITERALS[item]
    for cast in (int, float):
        try:
            return cast(item)
        except ValueError:
            continue
    return item


def draw(setting: Setting, rng: random.Random) -> Value:
    """A new value for ``setting``, different from its current one when the range allows.

    Half the draws are local moves (a neighbour, a nearby value), half are uniform over the
    declared range: local moves refine a good parent, uniform ones keep the search broad.
    """
    current, local = setting.value, rng.random() < 0.5
    if setting.kind == "choice":
        options = [o for o in setting.args if o != current] or list(setting.args)
        return rng.choice(options)
    if not isinstance(current, int | float):
        return current  # never from find_settings: only a choice may hold a string
    if setting.kind == "generic":
        new = current * rng.choice((0.5, 2.0))
        return max(1, int(new)) if isinstance(current, int) else new
    low, high = setting.args
    for _ in range(20):
        if setting.kind == "int":
            ilow, ihigh = math.ceil(low), math.floor(high)
            step = max(1, (ihigh - ilow) // 8)
            new = (int(current) + rng.choice((-step, step)) if local
                   else rng.randint(ilow, ihigh))
            new = min(ihigh, max(ilow, new))
        elif setting.kind == "log":
            base = math.log(current) if local and current > 0 else None
            log_new = (base + rng.gauss(0, 0.5) if base is not None
                       else rng.uniform(math.log(low), math.log(high)))
            new = float(f"{math.exp(min(math.log(high), max(math.log(low), log_new))):.2g}")
        else:
            span = high - low
            raw = current + rng.gauss(0, span / 6) if local else rng.uniform(low, high)
            new = round(min(high, max(low, raw)), _decimals(span))
        if new != current:
            return new
    return current


def _decimals(span: float) -> int:
    return max(0, 2 - math.floor(math.log10(span)))


def render(setting: Setting, value: Value) -> str:
    """``value`` as a Python literal in the style of the setting's current literal."""
    if isinstance(value, str):
        return f"{setting.quote}{value}{setting.quote}"
    if isinstance(value, bool) or value is None:
        return repr(value)
    if isinstance(setting.value, float) or isinstance(value, float):
        if "e" in setting.source.lower() and value != 0:
            return _scientific(float(value))
        text = repr(float(value)) if setting.kind != "log" else f"{value:.2g}"
        return text if any(c in text for c in ".en") else text + ".0"
    return str(int(value))


def _scientific(value: float) -> str:
    """``0.0021`` → ``2.1e-3``: the notation people write learning rates in."""
    exponent = math.floor(math.log10(abs(value)))
    mantissa = round(value / 10**exponent, 2)
    if abs(mantissa) >= 10:
        mantissa, exponent = round(mantissa / 10, 2), exponent + 1
    return f"{mantissa:g}e{exponent}"


def substitute(text: str, changes: list[tuple[Setting, str]]) -> str:
    """Replace each setting's literal span with its new source text (one file)."""
    lines = text.split("\n")
    for setting, literal in sorted(changes, key=lambda c: (c[0].line, -c[0].start)):
        line = lines[setting.line]
        lines[setting.line] = line[: setting.start] + literal + line[setting.end :]
    return "\n".join(lines)

"""EVOLVE-BLOCK regions: what a variant of a peer program may change, and numbers to mutate.

A line holding ``EVOLVE-BLOCK-START`` opens a region and one holding ``EVOLVE-BLOCK-END`` closes
it; both marker lines are outside. Bytes outside the regions must be byte-for-byte the seed's: the
peers evolve only the regions, and their evaluators may rely on the rest (a fixed ``run_*``
entry point, a validation helper). A file without markers is one region, as in OpenEvolve.
"""

from __future__ import annotations

import io
import random
import tokenize
from dataclasses import dataclass

START, END = "EVOLVE-BLOCK-START", "EVOLVE-BLOCK-END"


class RegionError(ValueError):
    """Markers that do not pair up."""


def spans(text: str) -> list[tuple[int, int]]:
    """Character spans ``[start, end)`` of each region's body (between the marker lines)."""
    out, opened, offset = [], None, 0
    for line in text.splitlines(keepends=True):
        if START in line:
            if opened is not None:
                raise RegionError("an EVOLVE-BLOCK-START inside an open region")
            opened = offset + len(line)
        elif END in line:
            if opened is None:
                raise RegionError("an EVOLVE-BLOCK-END without a START")
            out.append((opened, offset))
            opened = None
        offset += len(line)
    if opened is not None:
        raise RegionError("an EVOLVE-BLOCK-START is never closed")
    return out if out or START in text else [(0, len(text))]


def outside(text: str) -> list[str]:
    """The text outside the regions, piece by piece."""
    pieces, last = [], 0
    for start, end in spans(text):
        pieces.append(text[last:start])
        last = end
    pieces.append(text[last:])
    return pieces


def check(seed: str, variant: str, path: str) -> str | None:
    """Why ``variant`` breaks the region rule of ``seed`` (None when it keeps it)."""
    try:
        before = outside(seed)
    except RegionError as exc:
        return f"{path}: the seed's markers are broken ({exc})"
    try:
        after = outside(variant)
    except RegionError as exc:
        return f"{path}: {exc}: the EVOLVE-BLOCK markers must stay as shipped"
    if len(before) != len(after):
        return (f"{path}: {len(after) - 1} EVOLVE-BLOCK region(s), the seed has "
                f"{len(before) - 1}: the markers must stay as shipped")
    for index, (old, new) in enumerate(zip(before, after, strict=True)):
        if old != new:
            where = "before the first region" if index == 0 else (
                "after the last region" if index == len(before) - 1
                else f"between regions {index} and {index + 1}")
            first = next((n for n, (a, b) in enumerate(zip(old, new, strict=False)) if a != b),
                         min(len(old), len(new)))
            return (f"{path}: bytes outside the EVOLVE-BLOCK regions changed ({where}, at "
                    f"{first} characters in): only the regions may change")
    return None


@dataclass(frozen=True)
class Literal:
    start: int
    end: int
    text: str
    line: int


def numeric_literals(text: str) -> list[Literal]:
    """Every int or float literal inside the regions (not in strings or comments)."""
    regions = spans(text)
    starts, offset = [], 0
    for line in text.splitlines(keepends=True):
        starts.append(offset)
        offset += len(line)
    out = []
    try:
        tokens = list(tokenize.generate_tokens(io.StringIO(text).readline))
    except (tokenize.TokenError, SyntaxError):
        return []
    for token in tokens:
        if token.type != tokenize.NUMBER or token.string.lower().endswith("j"):
            continue
        start = starts[token.start[0] - 1] + token.start[1]
        end = starts[token.end[0] - 1] + token.end[1]
        if any(a <= start and end <= b for a, b in regions):
            out.append(Literal(start, end, token.string, token.start[0]))
    return out


def mutate_number(literal: str, rng: random.Random) -> str:
    """A nearby value of the same kind: an int moves by a step, a float scales by a factor."""
    clean = literal.replace("_", "")
    try:
        value: float = int(clean, 0)
    except ValueError:
        value = float(clean)
        new = value * rng.choice([0.5, 0.8, 0.9, 1.1, 1.25, 2.0]) if value else rng.choice(
            [0.1, 0.01, 1.0])
        return repr(float(f"{new:.6g}"))
    step = max(1, abs(int(value)) // 4)
    return str(max(0, int(value) + rng.choice([-step, step])))

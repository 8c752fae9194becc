"""Parse edits out of what a language model wrote.

Two formats, in order of preference:

- SEARCH/REPLACE blocks, each optionally preceded by the file's name::

      train.py
      <<<<<<< SEARCH
      N_LAYER = 2
      =======
      N_LAYER = 4
      >>>>>>> REPLACE

- a full rewrite of a file: a fenced code block (named in its fence line or on the line before
  it), used only when the answer holds no SEARCH/REPLACE block at all.

Model output is messy, so the parser tolerates code fences around or inside blocks, chatter,
``<think>`` sections, CRLF, 5 to 9 marker characters, aider's older ORIGINAL/UPDATED words, a
block closed by its fence instead of the REPLACE marker, and repeated blocks (kept once). An
unterminated block is dropped and noted, never half applied.
"""

from __future__ import annotations

import ast
import re
from dataclasses import dataclass, field
from pathlib import PurePosixPath

_SEARCH = re.compile(r"^\s*<{5,9}\s*(?:SEARCH|ORIGINAL)\b.*$")
_DIVIDER = re.compile(r"^\s*={5,9}\s*$")
_REPLACE = re.compile(r"^\s*>{5,9}\s*(?:REPLACE|UPDATED)\b.*$")
_FENCE = re.compile(r"^\s*(`{3,}|~{3,})\s*([^\s`]*)\s*(.*?)\s*$")
_THINK = re.compile(r"<think>.*?(</think>|\Z)", re.DOTALL)
_NAME = re.compile(r"[\w./-]*\w\.\w{1,8}")
_CODE_LANGS = {"", "python", "py", "python3"}


@dataclass(frozen=True)
class Block:
    """One SEARCH/REPLACE block. ``path`` is None when the model named no file."""

    path: str | None
    search: str
    replace: str
    fence_closed: bool = False
    """True when the block ended at its code fence instead of a REPLACE marker."""


@dataclass(frozen=True)
class Rewrite:
    """A whole file as the model rewrote it."""

    path: str | None
    text: str
    closed: bool = True
    """False when the fence was never closed: the answer was probably cut off."""


@dataclass
class ParsedEdits:
    blocks: list[Block] = field(default_factory=list)
    rewrites: list[Rewrite] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    """What the parser tolerated or dropped, e.g. ``1 unterminated block dropped``."""
    unterminated: int = 0
    """Blocks that started but never ended."""

    @property
    def empty(self) -> bool:
        return not self.blocks and not self.rewrites


def normalize(text: str) -> str:
    """CRLF and lone CR to LF; reasoning sections removed."""
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    return _THINK.sub("", text)


def resolve_path(name: str, editable: tuple[str, ...]) -> str:
    """Map a name as a model wrote it (``./train.py``, ``codelm/train.py``) onto an editable
    path when one matches; otherwise return the cleaned name (the validator rejects it)."""
    clean = str(PurePosixPath(name.strip().strip("`*'\":")))
    if clean in editable:
        return clean
    suffix = [p for p in editable if clean.endswith("/" + p)]
    if len(suffix) == 1:
        return suffix[0]
    base = [p for p in editable if PurePosixPath(p).name == PurePosixPath(clean).name]
    return base[0] if len(base) == 1 else clean


def _name_in(line: str, editable: tuple[str, ...]) -> str | None:
    """A file name on a header line (``### train.py``, ``File: `train.py` ``), if any."""
    stripped = line.strip().strip("#*` ").removeprefix("File:").removeprefix("file:").strip()
    if not stripped or len(stripped) > 120:
        return None
    names = _NAME.findall(stripped)
    if not names:
        return None
    resolved = [resolve_path(n, editable) for n in names]
    known = [r for r in resolved if r in editable]
    if known:
        return known[-1]
    # A bare name on a line of its own, e.g. "evaluate.py": the validator rejects it by name.
    return resolved[-1] if len(names) == 1 and stripped.strip("`*: ") == names[0] else None


def _header_path(lines: list[str], start: int, editable: tuple[str, ...]) -> str | None:
    """Look back from ``start`` over a fence line and up to two non-blank lines for a name."""
    seen = 0
    for i in range(start - 1, max(start - 6, -1), -1):
        line = lines[i]
        if not line.strip():
            continue
        fence = _FENCE.match(line)
        text = f"{fence.group(2)} {fence.group(3)}" if fence else line
        name = _name_in(text, editable)
        if name:
            return name
        seen += 1
        if seen >= 2 or (not fence and line.strip().endswith(".")):
            return None
    return None


def _strip_fences(part: list[str]) -> str:
    """A block's SEARCH or REPLACE text, without fence lines a model put inside it."""
    while part and _FENCE.match(part[0]):
        part = part[1:]
    while part and _FENCE.match(part[-1]):
        part = part[:-1]
    return "".join(line + "\n" for line in part)


def parse_edits(text: str, editable: tuple[str, ...]) -> ParsedEdits:
    """Every edit in a model's answer. Never raises: what it cannot use, it notes."""
    lines = normalize(text).split("\n")
    parsed = ParsedEdits()
    _parse_blocks(lines, editable, parsed)
    if not parsed.blocks and not parsed.unterminated:
        _parse_rewrites(lines, editable, parsed)
    return parsed


def _parse_blocks(lines: list[str], editable: tuple[str, ...], parsed: ParsedEdits) -> None:
    i, path, in_fence, seen = 0, None, False, set()
    while i < len(lines):
        line = lines[i]
        if not _SEARCH.match(line):
            if _FENCE.match(line):
                in_fence = not in_fence
            i += 1
            continue
        path = _header_path(lines, i, editable) or path
        opened_in_fence = in_fence
        search: list[str] = []
        replace: list[str] = []
        part, j = "search", i + 1
        end = None
        while j < len(lines):
            cur = lines[j]
            if _SEARCH.match(cur):
                break
            if part == "search" and _DIVIDER.match(cur):
                part = "replace"
            elif part == "replace" and _REPLACE.match(cur):
                end = "marker"
                break
            elif part == "replace" and opened_in_fence and cur.strip() in ("```", "~~~"):
                end = "fence"
                break
            else:
                (search if part == "search" else replace).append(cur)
            j += 1
        if end is None:
            parsed.unterminated += 1
            parsed.notes.append(f"unterminated block at line {i + 1} dropped")
            i = j
            continue
        if end == "fence":
            in_fence = False
            parsed.notes.append(f"block at line {i + 1} closed by its fence, no REPLACE marker")
        block = Block(path, _strip_fences(search), _strip_fences(replace), end == "fence")
        key = (block.path, block.search, block.replace)
        if key in seen:
            parsed.notes.append(f"repeated block at line {i + 1} kept once")
        else:
            seen.add(key)
            parsed.blocks.append(block)
        i = j + 1


def _parse_rewrites(lines: list[str], editable: tuple[str, ...], parsed: ParsedEdits) -> None:
    named: dict[str, Rewrite] = {}
    unnamed: list[Rewrite] = []
    i = 0
    while i < len(lines):
        fence = _FENCE.match(lines[i])
        if not fence:
            i += 1
            continue
        lang, rest = fence.group(2).lower(), fence.group(3)
        name = _name_in(f"{lang} {rest}", editable) or _header_path(lines, i, editable)
        j = i + 1
        while j < len(lines) and not lines[j].strip().startswith(fence.group(1)):
            j += 1
        body = "".join(line + "\n" for line in lines[i + 1 : j])
        rewrite = Rewrite(name, body, closed=j < len(lines))
        if name and (name in editable or lang not in _CODE_LANGS or name.endswith(".py")):
            named[name] = rewrite  # a later version of the same file wins
        elif lang in _CODE_LANGS or lang.endswith(".py"):
            unnamed.append(rewrite)
        i = j + 1
    parsed.rewrites.extend(named.values())
    if unnamed and not named:
        parsed.rewrites.append(max(unnamed, key=lambda r: len(r.text)))
        if len(unnamed) > 1:
            parsed.notes.append(f"{len(unnamed)} unnamed code blocks: the longest taken")
    if not parsed.rewrites:
        body = "\n".join(lines).strip("\n") + "\n"
        if body.strip() and _parses(body):
            parsed.rewrites.append(Rewrite(None, body))
            parsed.notes.append("no fence: the whole answer taken as the file")


def _parses(text: str) -> bool:
    try:
        ast.parse(text)
    except (SyntaxError, ValueError):
        return False
    return True

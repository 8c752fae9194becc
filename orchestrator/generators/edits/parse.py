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

- a unified diff (``--- a/train.py`` / ``+++ b/train.py`` / ``@@ ... @@`` hunks): each hunk
  becomes a block whose SEARCH is its context and ``-`` lines and whose REPLACE is its context and
  ``+`` lines, so it applies by content with the same matches-once rule (line numbers are ignored).

Blocks, hunks and named whole-file rewrites of *other* files may be mixed in one answer.

Model output is messy, so the parser tolerates code fences around or inside blocks, chatter,
CRLF, byte-order marks, 5 to 9 marker characters (exactly 7 ``=`` preferred for the divider, so an
RST underline inside a SEARCH text is not taken for it), aider's older ORIGINAL/UPDATED words, a
block closed by its fence instead of the REPLACE marker, and repeated blocks (kept once).

Reasoning is not the answer: ``<think>``/``<thinking>``/``<reasoning>`` sections (and everything
before an orphan closing tag), and every channel of a gpt-oss (harmony) answer but ``final``, are
dropped before parsing, so a draft edit in the reasoning is never applied.

Fences follow CommonMark: a fence closes only on a line of the same character, at least as long
as the opener, indented at most three spaces, with nothing after it; so a fence inside a
docstring or string of the code (indented, or with text around it) does not end the block.

A named block is routed by its name: a fence info string or header line naming a file that is not
editable (``evaluate.py``) makes a ``not_editable`` rejection, never an edit of another file.

Truncation: an answer the backend says it cut at its token limit (``finish_reason`` is
``length``) is refused as ``truncated`` whatever it holds: the model meant more than it wrote, and
half of a set of edits that belong together is not what it proposed. An answer cut with no word
from the backend shows it in its text: a block that never ends is dropped (noted) and the
complete blocks and hunks before it are kept; a whole-file rewrite whose fence never closed is
refused as ``truncated``.
"""

from __future__ import annotations

import ast
import re
from dataclasses import dataclass, field
from pathlib import PurePosixPath

_SEARCH = re.compile(r"^\s*<{5,9}\s*(?:SEARCH|ORIGINAL)\b.*$")
_DIVIDER = re.compile(r"^\s*={5,9}\s*$")
_DIVIDER_EXACT = re.compile(r"^\s*={7}\s*$")
_REPLACE = re.compile(r"^\s*>{5,9}\s*(?:REPLACE|UPDATED)\b.*$")
_FENCE = re.compile(r"^\s*(`{3,}|~{3,})\s*([^\s`]*)\s*(.*?)\s*$")
_REASONING_TAGS = ("think", "thinking", "reasoning", "thought")
_TAGS = "|".join(_REASONING_TAGS)
_THINK = re.compile(rf"<({_TAGS})>.*?(</\1>|\Z)", re.DOTALL | re.I)
_ORPHAN_CLOSE = re.compile(rf"</({_TAGS})>", re.I)
_OTHER_THINK = re.compile(r"(\[THINK\].*?(\[/THINK\]|\Z))|(◁think▷.*?(◁/think▷|\Z))", re.DOTALL)
_HARMONY = re.compile(r"<\|channel\|>\s*(\w+)[^<]*<\|message\|>(.*?)(?=<\|end\|>|<\|return\|>|"
                      r"<\|start\|>|<\|channel\|>|<\|call\|>|\Z)", re.DOTALL)
_HUNK = re.compile(r"^@@ -\d+(?:,\d+)? \+\d+(?:,\d+)? @@")
_DIFF_OLD = re.compile(r"^--- (?:a/)?(\S+)")
_DIFF_NEW = re.compile(r"^\+\+\+ (?:b/)?(\S+)")
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
    cut: bool = False
    """The backend says the answer was cut at its token limit."""


    @property
    def empty(self) -> bool:
        return not self.blocks and not self.rewrites


def normalize(text: str) -> str:
    """CRLF and lone CR to LF; byte-order marks dropped; reasoning removed: ``<think>``-style
    sections, everything before an orphan closing tag, and every harmony channel but ``final``."""
    text = text.replace("\r\n", "\n").replace("\r", "\n").replace("\ufeff", "")
    if "<|channel|>" in text:
        finals = [m.group(2) for m in _HARMONY.finditer(text) if m.group(1).lower() == "final"]
        text = finals[-1] if finals else ""
    elif text.lstrip().startswith("analysis") and "assistantfinal" in text:
        text = text.rsplit("assistantfinal", 1)[1]  # harmony with its special tokens stripped
    text = _THINK.sub("", text)
    text = _OTHER_THINK.sub("", text)
    orphans = list(_ORPHAN_CLOSE.finditer(text))
    if orphans:  # an opening tag the server stripped: all before the last closing one is thought
        text = text[orphans[-1].end():]
    return re.sub(r"<\|(?:start|end|return|message|channel|call)\|>(assistant)?", "", text)


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


def _fence_open(line: str) -> re.Match[str] | None:
    """A fence opening line per CommonMark: at most three spaces of indentation."""
    m = _FENCE.match(line)
    if m is None or len(line) - len(line.lstrip(" ")) > 3 or line.startswith("\t"):
        return None
    if m.group(1)[0] == "`" and "`" in (m.group(2) + m.group(3)):
        return None  # a backtick fence's info string may not hold a backtick
    return m


def _closes(line: str, opener: str) -> bool:
    """Whether ``line`` closes a fence opened by ``opener`` (its backticks or tildes)."""
    if len(line) - len(line.lstrip(" ")) > 3 or line.startswith("\t"):
        return False
    stripped = line.strip()
    return (len(stripped) >= len(opener) and set(stripped) == {opener[0]})


def _strip_fences(part: list[str]) -> str:
    """A block's SEARCH or REPLACE text, without fence lines a model put inside it."""
    while part and _FENCE.match(part[0]):
        part = part[1:]
    while part and _FENCE.match(part[-1]):
        part = part[:-1]
    return "".join(line + "\n" for line in part)


def parse_edits(text: str, editable: tuple[str, ...], *, truncated: bool = False) -> ParsedEdits:
    """Every edit in a model's answer. Never raises: what it cannot use, it notes.

    Args:
        truncated: the backend says the answer was cut at its token limit.
    """
    lines = normalize(text).split("\n")
    parsed = ParsedEdits()
    used = _parse_blocks(lines, editable, parsed)
    used |= _parse_diffs(lines, editable, parsed, used)
    if parsed.blocks:  # whole files of other files may come beside blocks
        rest = [line if i not in used else "" for i, line in enumerate(lines)]
        _parse_rewrites(rest, editable, parsed, named_only=True)
        edited = {b.path for b in parsed.blocks}
        for rewrite in [r for r in parsed.rewrites if r.path in edited]:
            parsed.rewrites.remove(rewrite)
            parsed.notes.append(f"a whole {rewrite.path} beside blocks that edit it: ignored")
    elif not parsed.unterminated:
        _parse_rewrites(lines, editable, parsed)
    parsed.cut = truncated
    return parsed


def _parse_blocks(lines: list[str], editable: tuple[str, ...], parsed: ParsedEdits) -> set[int]:
    """Parse the SEARCH/REPLACE blocks; return the indexes of the lines they (and the fences
    around them) take."""
    i, path, fence, seen = 0, None, "", set()
    fence_at = -1
    used: set[int] = set()
    while i < len(lines):
        line = lines[i]
        if not _SEARCH.match(line):
            if fence and _closes(line, fence):
                fence = ""
                if fence_at in used:  # the fence around a block: its closing line is the block's
                    used.add(i)
            elif not fence and (opened := _fence_open(line)):
                fence, fence_at = opened.group(1), i
            i += 1
            continue
        path = _header_path(lines, i, editable) or path
        opened_in_fence = bool(fence)
        search: list[str] = []
        replace: list[str] = []
        part, j = "search", i + 1
        end = None
        divider = _divider_kind(lines, i + 1)
        while j < len(lines):
            cur = lines[j]
            if _SEARCH.match(cur):
                break
            if part == "search" and divider.match(cur):
                part = "replace"
            elif part == "replace" and _REPLACE.match(cur):
                end = "marker"
                break
            elif part == "replace" and opened_in_fence and _closes(cur, fence):
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
        used.update(range(fence_at if opened_in_fence else i, j + 1))
        if end == "fence":
            fence = ""
            parsed.notes.append(f"block at line {i + 1} closed by its fence, no REPLACE marker")
        block = Block(path, _strip_fences(search), _strip_fences(replace), end == "fence")
        key = (block.path, block.search, block.replace)
        if key in seen:
            parsed.notes.append(f"repeated block at line {i + 1} kept once")
        else:
            seen.add(key)
            parsed.blocks.append(block)
        i = j + 1
    if fence and fence_at >= 0 and any(k >= fence_at for k in used):
        used.update(range(fence_at, len(lines)))
    return used


def _divider_kind(lines: list[str], start: int) -> re.Pattern[str]:
    """Exactly seven ``=`` when the block has such a line before its REPLACE marker (so an RST
    underline in the SEARCH text is text), else the tolerant 5 to 9."""
    for line in lines[start:]:
        if _REPLACE.match(line) or _SEARCH.match(line):
            break
        if _DIVIDER_EXACT.match(line):
            return _DIVIDER_EXACT
    return _DIVIDER


def _parse_diffs(lines: list[str], editable: tuple[str, ...], parsed: ParsedEdits,
                 used: set[int]) -> set[int]:
    """Unified-diff hunks as blocks: context and ``-`` lines to find, context and ``+`` lines
    to put instead. Returns the lines they take."""
    taken: set[int] = set()
    path: str | None = None
    i = 0
    while i < len(lines):
        if i in used:
            i += 1
            continue
        line = lines[i]
        old, new = _DIFF_OLD.match(line), _DIFF_NEW.match(lines[i + 1]) if i + 1 < len(lines) \
            else None
        if old and new:
            name = new.group(1) if new.group(1) != "/dev/null" else old.group(1)
            path = resolve_path(name, editable)
            taken.update((i, i + 1))
            i += 2
            continue
        if not _HUNK.match(line):
            i += 1
            continue
        search: list[str] = []
        replace: list[str] = []
        j = i + 1
        while j < len(lines):
            cur = lines[j]
            if _HUNK.match(cur) or (_DIFF_OLD.match(cur) and j + 1 < len(lines)
                                    and _DIFF_NEW.match(lines[j + 1])):
                break
            if cur.startswith("\\"):  # "\ No newline at end of file"
                j += 1
                continue
            if cur == "":
                if j + 1 < len(lines) and lines[j + 1][:1] in (" ", "-", "+"):
                    search.append("")
                    replace.append("")
                    j += 1
                    continue
                break
            mark, body = cur[0], cur[1:]
            if mark == " ":
                search.append(body)
                replace.append(body)
            elif mark == "-":
                search.append(body)
            elif mark == "+":
                replace.append(body)
            else:
                break
            j += 1
        taken.update(range(i, j))
        if search or replace:
            parsed.blocks.append(Block(path, "".join(s + "\n" for s in search),
                                       "".join(r + "\n" for r in replace)))
            parsed.notes.append(f"unified-diff hunk at line {i + 1} applied by its content")
        i = j
    return taken


_FINAL_WORDS = re.compile(r"\b(correct(ed)?|fix(ed)?|final|updated|revised|complete|full|"
                          r"working)\b", re.I)


def _parse_rewrites(lines: list[str], editable: tuple[str, ...], parsed: ParsedEdits,
                    named_only: bool = False) -> None:
    named: dict[str, Rewrite] = {}
    unnamed: list[tuple[Rewrite, bool]] = []
    i = 0
    while i < len(lines):
        fence = _fence_open(lines[i])
        if not fence:
            i += 1
            continue
        lang, rest = fence.group(2).lower(), fence.group(3)
        info_names = _NAME.findall(f"{lang} {rest}")
        name = (resolve_path(info_names[-1], editable) if info_names
                else _header_path(lines, i, editable))
        j = i + 1
        while j < len(lines) and not _closes(lines[j], fence.group(1)):
            j += 1
        body = "".join(line + "\n" for line in lines[i + 1 : j])
        rewrite = Rewrite(name, body, closed=j < len(lines))
        if name and (name in editable or lang not in _CODE_LANGS or name.endswith(".py")):
            named[name] = rewrite  # a later version of the same file wins
        elif lang in _CODE_LANGS or lang.endswith(".py"):
            before = " ".join(lines[max(0, i - 3):i])
            unnamed.append((rewrite, bool(_FINAL_WORDS.search(before))))
        i = j + 1
    parsed.rewrites.extend(named.values())
    if named_only:
        return
    if unnamed and not named:
        parsed.rewrites.append(_pick_unnamed(unnamed, parsed))
    if not parsed.rewrites:
        body = "\n".join(lines).strip("\n") + "\n"
        if body.strip() and _parses(body):
            parsed.rewrites.append(Rewrite(None, body))
            parsed.notes.append("no fence: the whole answer taken as the file")


def _pick_unnamed(unnamed: list[tuple[Rewrite, bool]], parsed: ParsedEdits) -> Rewrite:
    """Of several unnamed code blocks, the one the model calls its corrected or final version
    (the last such), else the last one of at least half the longest's length (a short usage
    example after the file is not the file)."""
    if len(unnamed) == 1:
        return unnamed[0][0]
    labelled = [r for r, final in unnamed if final]
    longest = max(len(r.text) for r, _ in unnamed)
    big = [r for r, _ in unnamed if len(r.text) * 2 >= longest]
    pick = labelled[-1] if labelled else big[-1]
    parsed.notes.append(f"{len(unnamed)} unnamed code blocks: "
                        + ("the one called final or corrected taken" if labelled
                           else "the last whole one taken"))
    return pick


def _parses(text: str) -> bool:
    try:
        ast.parse(text)
    except (SyntaxError, ValueError):
        return False
    return True

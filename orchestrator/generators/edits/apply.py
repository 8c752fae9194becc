"""Apply parsed edits to a parent's files, or say precisely why they do not apply.

A SEARCH text must match exactly once. When it does not match verbatim, two tolerant passes are
tried, each still required to match exactly once: lines compared with tabs expanded and trailing
spaces ignored, then lines compared after a uniform shift of indentation (the REPLACE text is
shifted the same way). Blank lines around a SEARCH text are ignored in the tolerant passes.
"""

from __future__ import annotations

from collections.abc import Callable

from orchestrator.generators.base import Reason, Rejected
from orchestrator.generators.edits.parse import Block, ParsedEdits, Rewrite


def apply_edits(
    files: dict[str, str], parsed: ParsedEdits, editable: tuple[str, ...]
) -> tuple[dict[str, str], list[str]]:
    """The parent's editable files with the edits applied, and notes on what was tolerated.

    Raises:
        Rejected: no usable edit, a file that is not editable, a SEARCH text that matches zero
            or several times, or an unterminated block or rewrite.
    """
    if parsed.cut:
        raise Rejected(Reason.TRUNCATED, "the answer was cut at the token limit "
                       "(finish_reason: length): its edits may be incomplete")
    if parsed.empty:
        if parsed.unterminated:
            raise Rejected(Reason.UNTERMINATED, f"{parsed.unterminated} block(s) never ended")
        raise Rejected(Reason.NO_EDIT, "no SEARCH/REPLACE block or code block found")
    out, notes = dict(files), list(parsed.notes)
    for n, block in enumerate(parsed.blocks, 1):
        path = _target(block.path, block.search, out, editable, n)
        text, note = apply_block(out[path], block, n)
        out[path] = text
        if note:
            notes.append(f"{path}: {note}")
    for rewrite in parsed.rewrites:
        path = _rewrite_target(rewrite, editable)
        if not rewrite.closed:
            raise Rejected(Reason.TRUNCATED, f"the code block for {path} was never closed")
        out[path] = rewrite.text
    return out, notes


def _target(
    path: str | None, search: str, files: dict[str, str], editable: tuple[str, ...], n: int
) -> str:
    if path is not None:
        if path not in editable:
            raise Rejected(Reason.NOT_EDITABLE, f"block {n} edits {path!r}; editable: {editable}")
        return path
    if len(editable) == 1:
        return editable[0]
    hits = [p for p in editable if search and _count_any(files[p], search)]
    if len(hits) > 1:
        raise Rejected(Reason.AMBIGUOUS, f"block {n} names no file and matches files {hits}")
    if not hits:
        raise Rejected(Reason.NO_MATCH, f"block {n} names no file and matches none")
    return hits[0]


def _rewrite_target(rewrite: Rewrite, editable: tuple[str, ...]) -> str:
    if rewrite.path is None:
        if len(editable) == 1:
            return editable[0]
        raise Rejected(Reason.NO_EDIT, "a code block names no file and several are editable")
    if rewrite.path not in editable:
        raise Rejected(Reason.NOT_EDITABLE, f"rewrites {rewrite.path!r}; editable: {editable}")
    return rewrite.path


def _count_any(text: str, search: str) -> int:
    lines = text.split("\n")
    pattern = _trim(search.rstrip("\n").split("\n"))
    return text.count(search) or len(_find(lines, pattern, _loose)) or len(_shifted(lines, pattern))


def apply_block(text: str, block: Block, n: int = 1) -> tuple[str, str | None]:
    """Apply one block to one file's text; return the new text and a note when tolerant.

    Raises:
        Rejected: the SEARCH text is empty, matches nowhere, or matches several times.
    """
    if not block.search.strip():
        if not text.strip():
            return block.replace, None
        raise Rejected(Reason.NO_MATCH, f"block {n} has an empty SEARCH text")
    block = _match_indent_style(text, block)
    count = text.count(block.search)
    if count == 1:
        return text.replace(block.search, block.replace, 1), None
    if count > 1:
        raise Rejected(Reason.AMBIGUOUS, f"block {n}'s SEARCH text matches {count} times")
    lines = text.split("\n")
    pattern = _trim(block.search.rstrip("\n").split("\n"))
    new = _trim(block.replace.rstrip("\n").split("\n")) if block.replace.strip() else []
    hits = _find(lines, pattern, _loose)
    note, shift = "matched ignoring trailing spaces and tabs", 0
    if not hits:
        shifted = _shifted(lines, pattern)
        hits, note = [h for h, _ in shifted], "matched with its indentation shifted"
        shift = shifted[0][1] if shifted else 0
    if len(hits) > 1:
        raise Rejected(Reason.AMBIGUOUS, f"block {n}'s SEARCH text matches {len(hits)} places")
    if not hits:
        if new and block.replace in text:
            return text, f"block {n} already applied (its REPLACE text is present): skipped"
        first = pattern[0].strip()[:60]
        raise Rejected(Reason.NO_MATCH, f"block {n}'s SEARCH text not found (starts {first!r})")
    start = hits[0]
    lines[start : start + len(pattern)] = [_indent(line, shift) for line in new]
    return "\n".join(lines), note


def _match_indent_style(text: str, block: Block) -> Block:
    """A block indented with tabs for a file indented with spaces (or the reverse) would make a
    ``TabError``: re-indent its leading whitespace the file's way (a tab is four spaces)."""
    file_tabs = any(line.startswith("\t") for line in text.split("\n"))
    file_spaces = any(line.startswith(" ") for line in text.split("\n"))
    if file_spaces and not file_tabs:
        return Block(block.path, _leading(block.search, lambda w: w.expandtabs(4)),
                     _leading(block.replace, lambda w: w.expandtabs(4)), block.fence_closed)
    if file_tabs and not file_spaces:
        return Block(block.path, _leading(block.search, _to_tabs),
                     _leading(block.replace, _to_tabs), block.fence_closed)
    return block


def _leading(text: str, fix: Callable[[str], str]) -> str:
    out = []
    for line in text.split("\n"):
        body = line.lstrip(" \t")
        out.append(fix(line[: len(line) - len(body)]) + body)
    return "\n".join(out)


def _to_tabs(white: str) -> str:
    width = len(white.expandtabs(4))
    return "\t" * (width // 4) + " " * (width % 4)


def _trim(lines: list[str]) -> list[str]:
    start, end = 0, len(lines)
    while start < end and not lines[start].strip():
        start += 1
    while end > start and not lines[end - 1].strip():
        end -= 1
    return lines[start:end]


def _loose(line: str) -> str:
    return line.expandtabs(4).rstrip()


def _find(lines: list[str], pattern: list[str], norm: Callable[[str], str]) -> list[int]:
    want = [norm(p) for p in pattern]
    size = len(want)
    return [
        i
        for i in range(len(lines) - size + 1)
        if all(norm(lines[i + k]) == want[k] for k in range(size))
    ]


def _width(line: str) -> int:
    expanded = line.expandtabs(4)
    return len(expanded) - len(expanded.lstrip())


def _shifted(lines: list[str], pattern: list[str]) -> list[tuple[int, int]]:
    """Places where ``pattern`` matches with every line's indentation moved by the same amount."""
    if not pattern:
        return []
    hits = []
    for i in range(len(lines) - len(pattern) + 1):
        shift = None
        for k, want in enumerate(pattern):
            have = lines[i + k]
            if have.strip() != want.strip():
                break
            if not want.strip():
                continue
            delta = _width(have) - _width(want)
            if shift is None:
                shift = delta
            elif delta != shift:
                break
        else:
            hits.append((i, shift or 0))
    return hits


def _indent(line: str, shift: int) -> str:
    if shift == 0 or not line.strip():
        return line
    if shift > 0:
        return " " * shift + line
    expanded = line.expandtabs(4)
    return expanded[min(-shift, _width(line)) :]

"""Unified diffs between two versions of a program's editable files."""

from __future__ import annotations

import difflib


def unified_diff(old: dict[str, str], new: dict[str, str], context: int = 3) -> str:
    """A ``git diff``-style patch from ``old`` to ``new`` (files in path order; '' if equal)."""
    parts = []
    for path in sorted(set(old) | set(new)):
        before, after = old.get(path, ""), new.get(path, "")
        if before == after:
            continue
        lines = difflib.unified_diff(
            before.splitlines(keepends=True),
            after.splitlines(keepends=True),
            fromfile=f"a/{path}" if path in old else "/dev/null",
            tofile=f"b/{path}" if path in new else "/dev/null",
            n=context,
        )
        for line in lines:
            parts.append(line if line.endswith("\n") else line + "\n\\ No newline at end of file\n")
    return "".join(parts)

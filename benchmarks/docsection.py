"""Write one benchmark's section of ``docs/benchmarks.md`` and leave the others as they are."""

from __future__ import annotations

from pathlib import Path

TITLE = "# Benchmarks\n"


def write_section(path: Path, section: str) -> None:
    """Replace the ``## ...`` section whose heading line ``section`` starts with, or append it."""
    heading = section.splitlines()[0]
    text = path.read_text() if path.exists() else TITLE
    lines = text.splitlines(keepends=True)
    start = next((i for i, line in enumerate(lines) if line.rstrip() == heading), None)
    if start is None:
        path.write_text(text.rstrip("\n") + "\n\n" + section.rstrip("\n") + "\n")
        return
    end = next((i for i in range(start + 1, len(lines)) if lines[i].startswith("## ")), len(lines))
    tail = "".join(lines[end:])
    body = "".join(lines[:start]) + section.rstrip("\n") + "\n"
    path.write_text(body + ("\n" + tail if tail else ""))

"""Copying the TRAIN stage's artifacts out of its container, capped and defanged.

The tar stream from the engine is read as a stream (never whole into memory), and only regular
files and folders with plain relative names are written, under one folder, up to a byte and an
entry cap (folders count, parents included, so empty folders cost the host no more than files).
Symlinks, devices and names that climb out (``..``, absolute) are skipped and reported: the
variant wrote them, so they are hostile until shown otherwise. So is a name that is not plain
printable text: control characters (newline, CR, tab, terminal escapes), invalid UTF-8, bidi and
other format characters, line separators; such a name would mislead whoever lists the folder, so
it is refused, never escaped (the problem quotes it with ``ascii()``). A hard link to a file
copied earlier is copied again as a regular file, its bytes counted against the cap; one to a
file that was not copied is a problem. A name the host refuses (too long, a file where a folder
should be) is a reported problem too, never an exception.
"""

from __future__ import annotations

import io
import shutil
import tarfile
import unicodedata
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

MAX_FILES = 1000
"""Most entries (files and folders together) copied out of one TRAIN stage."""
MAX_PROBLEMS = 20
"""Problems kept word for word per copy; the rest are only counted."""
_UNPRINTABLE = frozenset({"Cc", "Cf", "Cs", "Co", "Cn", "Zl", "Zp"})
"""Unicode categories refused in a name: controls, format (bidi), surrogates (what invalid UTF-8
decodes to), private use, unassigned, line and paragraph separators."""


@dataclass
class CopyReport:
    files: int = 0
    """Regular files written."""
    bytes: int = 0
    """Bytes of file content written."""
    entries: int = 0
    """Files and folders (parents included) written: what ``MAX_FILES`` caps."""
    folders: set[tuple[str, ...]] = field(default_factory=set)
    """Folders made so far, as parts relative to ``dest`` (at most ``MAX_FILES``)."""
    problems: list[str] = field(default_factory=list)
    """What was skipped and why, at most ``MAX_PROBLEMS`` word for word."""
    dropped_problems: int = 0
    """Problems past ``MAX_PROBLEMS``, only counted."""
    copied: dict[str, tuple[str, ...]] = field(default_factory=dict)
    """Archive names of the regular files written, and where (a hard link copies from there)."""

    def problem(self, text: str) -> None:
        if len(self.problems) < MAX_PROBLEMS:
            self.problems.append(text)
        else:
            self.dropped_problems += 1


class _ChunkReader(io.RawIOBase):
    """A file object over an iterator of byte chunks, refusing to read past ``limit`` bytes."""

    def __init__(self, chunks: Iterable[bytes], limit: int):
        self.chunks: Iterator[bytes] = iter(chunks)
        self.pending = b""
        self.left = limit
        self.over = False

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: memoryview) -> int:  # type: ignore[override]
        while not self.pending:
            chunk = next(self.chunks, None)
            if chunk is None:
                return 0
            if len(chunk) > self.left:
                self.over = True
                return 0
            self.left -= len(chunk)
            self.pending = chunk
        size = min(len(buffer), len(self.pending))
        buffer[:size], self.pending = self.pending[:size], self.pending[size:]
        return size


def extract(chunks: Iterable[bytes], dest: Path, cap_bytes: int) -> CopyReport:
    """Write the regular files of a ``get_archive`` tar stream of ``/out`` into ``dest``.

    Args:
        chunks: the tar stream, as the engine sends it.
        dest: an empty folder, the variant's ``artifacts/``.
        cap_bytes: most bytes of file content copied; the rest is skipped and reported.
    """
    report = CopyReport()
    raw = _ChunkReader(chunks, cap_bytes + 4 * 1024 * 1024)
    try:
        with tarfile.open(fileobj=io.BufferedReader(raw), mode="r|") as tar:
            for member in tar:
                _member(tar, member, dest, cap_bytes, report)
                # A streaming TarFile keeps every header otherwise (``members`` is a real
                # attribute that typeshed does not declare).
                tar.members.clear()  # type: ignore[attr-defined]
    except tarfile.TarError as exc:
        report.problem(f"artifact archive unreadable: {exc}")
    if raw.over:
        report.problem(f"artifacts over the {cap_bytes}-byte cap: the rest was dropped")
    if report.dropped_problems:
        report.problems.append(f"({report.dropped_problems} more artifact problems, not kept)")
    return report


def plain_name(name: str) -> bool:
    """Whether every character of ``name`` is printable text (no control, format, surrogate,
    unassigned or separator character)."""
    return all(unicodedata.category(c) not in _UNPRINTABLE for c in name)


def _member(tar: tarfile.TarFile, member: tarfile.TarInfo, dest: Path, cap: int,
            report: CopyReport) -> None:
    parts = PurePosixPath(member.name).parts[1:]  # drop the leading "out"
    if not parts:
        return
    if any(p in ("..", "") for p in parts) or PurePosixPath(member.name).is_absolute():
        report.problem(f"artifact with an unsafe name skipped: {ascii(member.name[:100])}")
        return
    if not plain_name(member.name):
        report.problem(f"artifact with control characters or invalid UTF-8 in its name skipped: "
                       f"{ascii(member.name[:100])}")
        return
    source: tuple[str, ...] | None = None
    if member.islnk():
        source = report.copied.get(member.linkname)
        if source is None:
            report.problem(f"hard link {ascii(member.name[:90])} to a file not copied, skipped")
            return
        size = dest.joinpath(*source).stat().st_size
    elif not member.isdir() and not member.isreg():
        report.problem(f"artifact not a regular file, skipped: {ascii(member.name[:90])}")
        return
    else:
        size = max(member.size, 0)
    is_file = not member.isdir()
    folders = [parts[:i] for i in range(1, len(parts) + member.isdir())]
    new = [f for f in folders if f not in report.folders]
    if report.entries + len(new) + is_file > MAX_FILES or report.bytes + size > cap:
        report.problem(f"artifact over the caps skipped: {ascii(member.name[:100])}")
        return
    report.folders.update(new)  # counted before trying: a failed mkdir may have made some
    report.entries += len(new) + is_file
    target = dest.joinpath(*parts)
    try:  # the host may refuse what the container allowed: too long a name, a file/folder clash
        (target if member.isdir() else target.parent).mkdir(parents=True, exist_ok=True)
        if source is not None:
            _copy_file(dest.joinpath(*source), target)
        elif member.isreg():
            _copy(tar, member, target)
    except OSError as exc:
        report.problem(f"artifact {ascii(member.name[:100])} not copied: {exc.strerror or exc}")
        return
    if is_file:
        report.files += 1
        report.bytes += size
        if len(report.copied) < MAX_FILES:
            report.copied[member.name] = parts


def _copy_file(source: Path, target: Path) -> None:
    """A hard link's content, copied from the file already written (never linked: the host
    folder holds independent regular files only)."""
    if target.exists() or target.is_symlink():
        raise OSError(f"{target.name!r} exists already")
    with source.open("rb") as data, target.open("xb") as out:
        shutil.copyfileobj(data, out)
    target.chmod(0o644)


def _copy(tar: tarfile.TarFile, member: tarfile.TarInfo, target: Path) -> None:
    source = tar.extractfile(member)
    if source is None:
        raise OSError(f"no data for {member.name[:100]!r}")
    with source, target.open("wb") as out:
        shutil.copyfileobj(source, out)
    target.chmod(0o644)

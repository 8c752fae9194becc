"""Copying the TRAIN stage's artifacts out of its container, capped and defanged.

The tar stream from the engine is read as a stream (never whole into memory), and only regular
files and folders with plain relative names are written, under one folder, up to a byte and a
file-count cap. Links, devices and names that climb out (``..``, absolute) are skipped and
reported: the variant wrote them, so they are hostile until shown otherwise.
"""

from __future__ import annotations

import io
import shutil
import tarfile
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

MAX_FILES = 1000
"""Most files copied out of one TRAIN stage."""


@dataclass
class CopyReport:
    files: int = 0
    bytes: int = 0
    problems: list[str] = field(default_factory=list)


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
    except tarfile.TarError as exc:
        report.problems.append(f"artifact archive unreadable: {exc}")
    if raw.over:
        report.problems.append(f"artifacts over the {cap_bytes}-byte cap: the rest was dropped")
    return report


def _member(tar: tarfile.TarFile, member: tarfile.TarInfo, dest: Path, cap: int,
            report: CopyReport) -> None:
    parts = PurePosixPath(member.name).parts[1:]  # drop the leading "out"
    if not parts:
        return
    if any(p in ("..", "") for p in parts) or PurePosixPath(member.name).is_absolute():
        report.problems.append(f"artifact with an unsafe name skipped: {member.name[:100]!r}")
        return
    target = dest.joinpath(*parts)
    if member.isdir():
        target.mkdir(parents=True, exist_ok=True)
        return
    if not member.isreg():
        report.problems.append(f"artifact not a regular file, skipped: {member.name[:90]!r}")
        return
    if report.files >= MAX_FILES or report.bytes + member.size > cap:
        report.problems.append(f"artifact over the caps skipped: {member.name[:100]!r}")
        return
    source = tar.extractfile(member)
    if source is None:
        return
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        with source, target.open("wb") as out:
            shutil.copyfileobj(source, out)
    except OSError as exc:  # e.g. a file and a folder of the same name
        report.problems.append(f"artifact {member.name[:100]!r} not copied: {exc.strerror}")
        return
    target.chmod(0o644)
    report.files += 1
    report.bytes += member.size

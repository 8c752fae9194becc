"""What crosses the cluster as bytes: program trees out to the nodes, variant folders back.

A program tree (code and data) is packed once per run into a deterministic tar (sorted names,
no times, no owners), so its sha256 names its content; a node unpacks it once into a cache keyed
by that hash. A variant's folder comes back as a capped tar, and the head re-checks it with the
same code that defangs a TRAIN stage's artifacts (:func:`orchestrator.containers.artifacts.extract`)
before anything lands where the local runner would have written it.
"""

from __future__ import annotations

import hashlib
import io
import os
import shutil
import tarfile
import tempfile
from dataclasses import dataclass
from pathlib import Path

from orchestrator.containers.artifacts import extract
from orchestrator.errors import InfraError

FOLDER_SLACK_BYTES = 64 * 1024 * 1024
"""What a variant folder may hold beyond its artifacts' cap: logs, events, the result."""
_TOP = "folder"
"""The top folder of a returned folder tar (``extract`` drops the first name part)."""


@dataclass(frozen=True)
class Tree:
    sha256: str
    data: bytes


def pack_tree(root: Path) -> Tree:
    """A program folder as a deterministic tar: regular files and folders only, read as they are
    now (a symlink inside the program is packed as the file it names)."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for path in sorted(_files(root)):
            rel = path.relative_to(root).as_posix()
            data = path.read_bytes()
            info = tarfile.TarInfo(rel)
            info.size, info.mode, info.mtime = len(data), 0o644, 0
            tar.addfile(info, io.BytesIO(data))
    data = buffer.getvalue()
    return Tree(hashlib.sha256(data).hexdigest(), data)


def _files(root: Path) -> list[Path]:
    out: list[Path] = []
    for folder, dirs, names in os.walk(root):
        dirs[:] = [d for d in dirs if d != "__pycache__"]
        out.extend(Path(folder) / n for n in names if (Path(folder) / n).is_file())
    return out


def unpack_tree(data: bytes, sha256: str, cache: Path) -> Path:
    """Unpack a program tree into ``cache/programs/SHA`` (once; a second call finds it).

    Raises:
        InfraError: the bytes do not hash to ``sha256`` (damaged on the way).
    """
    target = cache / "programs" / sha256
    if target.is_dir():
        return target
    if hashlib.sha256(data).hexdigest() != sha256:
        raise InfraError(f"program tree {sha256[:12]} arrived damaged (its hash differs)")
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(dir=target.parent, prefix=".unpack-"))
    try:
        with tarfile.open(fileobj=io.BytesIO(data), mode="r:") as tar:
            tar.extractall(staging, filter="data")
        try:
            staging.rename(target)  # atomic: two agents on one disk unpack it once between them
        except OSError:
            if not target.is_dir():
                raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return target


def pack_folder(folder: Path, cap_bytes: int) -> bytes:
    """A variant's folder as a tar under ``folder/``, at most ``cap_bytes`` of file content
    (files past the cap are left out; the head's check reports what is missing)."""
    buffer = io.BytesIO()
    used = 0
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        tar.add(folder, arcname=_TOP, recursive=False)
        for path in sorted(folder.rglob("*")):
            if path.is_symlink() or not (path.is_file() or path.is_dir()):
                continue
            size = path.stat().st_size if path.is_file() else 0
            if used + size > cap_bytes:
                continue
            used += size
            tar.add(path, arcname=f"{_TOP}/{path.relative_to(folder).as_posix()}",
                    recursive=False)
    return buffer.getvalue()


def unpack_folder(data: bytes, dest: Path, cap_bytes: int) -> list[str]:
    """Write a returned folder tar into ``dest`` with the artifact checks (regular files and
    folders with plain names only, capped); return the problems found.

    The files go to a fresh folder beside ``dest`` first; each top-level entry then replaces its
    namesake in ``dest`` (what the loop wrote there itself, the source and the diff, stays).
    """
    dest.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(dir=dest.parent, prefix=f".{dest.name}-"))
    try:
        report = extract(_chunks(data), staging, cap_bytes)
        for entry in sorted(staging.iterdir()):
            target = dest / entry.name
            if target.is_dir() and not target.is_symlink():
                shutil.rmtree(target)
            elif target.exists() or target.is_symlink():
                target.unlink()
            entry.rename(target)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return report.problems


def _chunks(data: bytes, size: int = 1 << 20) -> list[bytes]:
    return [data[i:i + size] for i in range(0, len(data), size)]

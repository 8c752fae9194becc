"""The program as a run saw it: copied into the run folder, and hashed.

A run folder stands alone: at start the program's code (manifest, evaluator, the seed's editable
files: everything that goes into an image, not its data) is copied to ``RUN/program/``, and the
readers (``status``, ``best``, ``show``, ``lineage``, ``report``) load the program from there. So
a run folder read after the program moved, or downloaded elsewhere as a CI artifact, still reads.

The hash covers every file of the program folder, data included: a resumed run compares it and
refuses a program that changed under it (an edited evaluator would change what the numbers mean).
"""

from __future__ import annotations

import hashlib
import os
import shutil
from pathlib import Path

from orchestrator.errors import ConfigError
from orchestrator.program import MANIFEST, Manifest, Program
from orchestrator.toml_model import load_toml_model

COPY = "program"
"""The copy's folder, relative to the run folder (what the store records)."""


def program_hash(root: Path) -> str:
    """sha256 over every file under ``root`` (path, size, bytes), in path order; symlinks are
    hashed as their target text, ``__pycache__`` skipped."""
    digest = hashlib.sha256()
    root = Path(root)
    for folder, dirs, names in os.walk(root):
        dirs[:] = sorted(d for d in dirs if d != "__pycache__")
        for name in sorted(names):
            path = Path(folder, name)
            rel = path.relative_to(root).as_posix()
            body = os.readlink(path).encode() if path.is_symlink() else path.read_bytes()
            digest.update(f"{rel}\0{len(body)}\0".encode())
            digest.update(body)
    return digest.hexdigest()


def copy_program(program: Program, run_folder: Path) -> str:
    """Copy the program's code (not its data) into ``run_folder/program``; return that path
    relative to the run folder."""
    dest = run_folder / COPY
    for rel in sorted(set(program.code_files()) | {MANIFEST}):
        (dest / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(program.root / rel, dest / rel)
    return COPY


def read_program(root: Path) -> Program:
    """A program to read a run with: its manifest checked, but neither its data nor the host
    (a copy in a run folder has no data, and the reading host need not fit it).

    Raises:
        ConfigError: no manifest, or an invalid one.
    """
    root = Path(root).resolve()
    if not (root / MANIFEST).is_file():
        raise ConfigError(f"{root} is not a program: it has no {MANIFEST}")
    return Program(root, load_toml_model(Manifest, root / MANIFEST))

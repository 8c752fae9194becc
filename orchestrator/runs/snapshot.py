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
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

from orchestrator.errors import ConfigError
from orchestrator.outcomes import Goal

if TYPE_CHECKING:
    from orchestrator.program import Program

MANIFEST = "program.toml"

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
    from orchestrator.program import Manifest, Program
    from orchestrator.toml_model import load_toml_model

    root = Path(root).resolve()
    if not (root / MANIFEST).is_file():
        raise ConfigError(f"{root} is not a program: it has no {MANIFEST}")
    return Program(root, load_toml_model(Manifest, root / MANIFEST))


class MetricFacts(Protocol):
    @property
    def name(self) -> str: ...

    @property
    def goal(self) -> Goal: ...

    @property
    def noise(self) -> float | None: ...


class ManifestFacts(Protocol):
    @property
    def metric(self) -> MetricFacts: ...


class ProgramFacts(Protocol):
    """What the readers of a run need of its program: its name and its metric. A ``Program``
    is one; :func:`read_facts` makes a light one."""

    @property
    def name(self) -> str: ...

    @property
    def manifest(self) -> ManifestFacts: ...


@dataclass(frozen=True)
class _Metric:
    name: str
    goal: Goal
    noise: float | None


@dataclass(frozen=True)
class _Manifest:
    metric: _Metric


@dataclass(frozen=True)
class _Facts:
    root: Path
    name: str
    manifest: _Manifest
    protected: bool = True
    """False for a peer program run with ``isolation = "shared"``."""


def read_facts(root: Path) -> ProgramFacts:
    """The program's name and metric from its manifest, read with ``tomllib`` alone: what
    ``status``, ``best``, ``show`` and ``lineage`` need, without building the manifest's models
    (the copy was checked whole when the run started).

    Raises:
        ConfigError: no manifest, or one without these keys.
    """
    path = Path(root) / MANIFEST
    try:
        data = tomllib.loads(path.read_text())
        metric = data["metric"]
        goal = metric["goal"]
        if goal not in ("minimize", "maximize"):
            raise ValueError(f"metric.goal {goal!r}")
        noise = metric.get("noise")
        facts = _Metric(str(metric["name"]), goal, float(noise) if noise is not None else None)
        shared = (data["program"].get("format", "native") != "native"
                  and data["program"].get("isolation", "split") != "split")
        return _Facts(Path(root), str(data["program"]["name"]), _Manifest(facts), not shared)
    except FileNotFoundError:
        raise ConfigError(f"{root} is not a program: it has no {MANIFEST}") from None
    except (tomllib.TOMLDecodeError, KeyError, TypeError, ValueError) as exc:
        raise ConfigError(f"{path}: cannot read the program's name and metric: {exc}") from None

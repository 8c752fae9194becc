"""The program contract: a directory with a ``program.toml`` manifest.

A program names its entrypoint (the untrusted train stage), its trusted evaluator, the files a
generator may change, the metric and its direction, the resources of one run and its data. The
manifest is parsed into frozen pydantic models: a misspelt key is an error naming the key.
"""

from __future__ import annotations

import hashlib
import re
from pathlib import Path, PurePosixPath

from pydantic import Field, field_validator

from orchestrator.errors import ConfigError
from orchestrator.result import Goal
from orchestrator.toml_model import Frozen, load_toml_model

MANIFEST = "program.toml"
_MEMORY = re.compile(r"^(\d+(?:\.\d+)?)([kmg]?)b?$", re.IGNORECASE)
_UNITS = {"": 1, "k": 1024, "m": 1024**2, "g": 1024**3}


def _relative(path: str) -> str:
    pure = PurePosixPath(path)
    if pure.is_absolute() or ".." in pure.parts or not path.strip():
        raise ValueError(f"{path!r} must be a relative path inside the program directory")
    return str(pure)


class ProgramSection(Frozen):
    name: str = Field(pattern=r"^[a-z0-9][a-z0-9_.-]{0,63}$")
    """Short name; used in image tags and labels."""
    entrypoint: str = "train.py"
    """The script the TRAIN stage runs. Untrusted once a generator has edited it."""
    evaluator: str = "evaluate.py"
    """The script the EVAL stage runs: always the program's own, never a variant's copy."""
    editable: tuple[str, ...] = ("train.py",)
    """The only files a generator may change."""
    description: str = ""
    """What the program does, in words a language model reads in its prompt."""

    _paths = field_validator("entrypoint", "evaluator")(_relative)

    @field_validator("editable")
    @classmethod
    def _editable(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        return tuple(_relative(p) for p in value)


class MetricSection(Frozen):
    name: str = Field(pattern=r"^[A-Za-z_][A-Za-z0-9_.]{0,63}$")
    """The key of the evaluator's result that ranks variants."""
    goal: Goal
    """Whether smaller or larger is better."""
    noise: float | None = Field(default=None, ge=0)
    """Standard deviation of the metric across seeds of the same source, when measured."""


class ResourcesSection(Frozen):
    cpus: float = Field(default=1.0, gt=0, le=256)
    """CPU cores one run may use."""
    memory: str = "2g"
    """Memory limit of one container (swap off), e.g. ``512m``, ``4g``."""
    gpus: int = Field(default=0, ge=0, le=64)
    """GPUs one run needs; 0 for CPU-only programs."""
    timeout_s: float = Field(default=120, gt=0, le=7 * 24 * 3600)
    """Wall-clock limit of the TRAIN stage; the EVAL stage gets the same again."""
    time_budget_s: float | None = Field(default=None, gt=0)
    """Training budget handed to the program (``SELFPROG_TIME_BUDGET_S``); defaults to 80% of
    ``timeout_s`` so a program that honours it ends before it is killed."""
    gpu_time_budget_s: float | None = Field(default=None, gt=0)
    """Budget used instead of ``time_budget_s`` when the run is given a GPU."""
    pids: int = Field(default=256, ge=16, le=65536)
    """Most processes and threads in one container."""
    disk: str = "1g"
    """Size of the writable output folder and of the largest file a program may write."""

    @field_validator("memory", "disk")
    @classmethod
    def _size(cls, value: str) -> str:
        parse_size(value)
        return value

    @property
    def memory_bytes(self) -> int:
        return parse_size(self.memory)

    @property
    def disk_bytes(self) -> int:
        return parse_size(self.disk)

    def budget_s(self, on_gpu: bool) -> float:
        if on_gpu and self.gpu_time_budget_s:
            return self.gpu_time_budget_s
        return self.time_budget_s or 0.8 * self.timeout_s


class DataSection(Frozen):
    train: str | None = None
    """Folder given to the TRAIN stage only, read-only."""
    heldout: str | None = None
    """Folder given to the EVAL stage only, read-only. A variant never sees it."""

    @field_validator("train", "heldout")
    @classmethod
    def _paths(cls, value: str | None) -> str | None:
        return None if value is None else _relative(value)


class Manifest(Frozen):
    program: ProgramSection
    metric: MetricSection
    resources: ResourcesSection = ResourcesSection()
    data: DataSection = DataSection()


def parse_size(text: str) -> int:
    """``"512m"`` → bytes. Raises ValueError on anything else."""
    match = _MEMORY.match(text.strip())
    if not match:
        raise ValueError(f"{text!r} is not a size like 512m or 4g")
    return int(float(match.group(1)) * _UNITS[match.group(2).lower()])


class Program:
    """A program directory and its validated manifest."""

    def __init__(self, root: Path, manifest: Manifest):
        self.root = root
        self.manifest = manifest

    @classmethod
    def load(cls, root: str | Path) -> Program:
        """Read and validate ``root/program.toml``.

        Raises:
            ConfigError: no manifest, bad TOML, an unknown or invalid key (named in the message),
                or a named file that does not exist.
        """
        root = Path(root).resolve()
        path = root / MANIFEST
        if not path.is_file():
            raise ConfigError(f"{root} is not a program: it has no {MANIFEST}")
        manifest = load_toml_model(Manifest, path)
        program = cls(root, manifest)
        program._check_files(path)
        return program

    def _check_files(self, path: Path) -> None:
        p = self.manifest.program
        for rel in (p.entrypoint, p.evaluator, *p.editable):
            if not (self.root / rel).is_file():
                raise ConfigError(f"{path}: {rel!r} is named but not in {self.root}")
        if p.evaluator in p.editable:
            raise ConfigError(f"{path}: the evaluator {p.evaluator!r} cannot be editable")
        for folder in (self.manifest.data.train, self.manifest.data.heldout):
            if folder and not (self.root / folder).is_dir():
                raise ConfigError(f"{path}: data folder {folder!r} is not in {self.root}")

    @property
    def name(self) -> str:
        return self.manifest.program.name

    def source_files(self) -> dict[str, str]:
        """The editable files as shipped: the seed variant's source."""
        return {rel: (self.root / rel).read_text() for rel in self.manifest.program.editable}

    def code_files(self) -> list[str]:
        """Every file that goes into a variant's image: the program minus its data tree.

        The data tree is each data folder's parent folder when that is not the program root
        (``data/train`` and ``data/heldout`` exclude all of ``data/``, so a record of the
        held-out files such as ``data/corpus.json`` never ships), else the data folder itself.
        Editable files are always kept.
        """
        data = {_data_tree(d) for d in (self.manifest.data.train, self.manifest.data.heldout) if d}
        editable = set(self.manifest.program.editable)
        files = []
        for path in sorted(self.root.rglob("*")):
            rel = path.relative_to(self.root).as_posix()
            if not path.is_file() or "__pycache__" in path.parts:
                continue
            if rel not in editable and any(rel == d or rel.startswith(d + "/") for d in data):
                continue
            files.append(rel)
        return files


def _data_tree(folder: str) -> str:
    """What a data folder keeps out of the image: its parent, unless that is the program root."""
    parent = PurePosixPath(folder).parent.as_posix()
    return folder if parent in ("", ".") else parent


def variant_hash(files: dict[str, str]) -> str:
    """A variant's identity: the hash of its editable files, in a stable order."""
    digest = hashlib.sha256()
    for rel in sorted(files):
        body = files[rel].encode()
        digest.update(f"{rel}\0{len(body)}\0".encode())
        digest.update(body)
    return digest.hexdigest()


"""The program contract: a directory with a ``program.toml`` manifest.

A program names its entrypoint (the untrusted train stage), its trusted evaluator, the files a
generator may change, the metric and its direction, the resources of one run and its data. The
manifest is parsed into frozen pydantic models: a misspelt key is an error naming the key.

Every path a manifest names, and every file a variant's image or a prompt takes from the folder,
must stay inside the program folder after symlinks are followed; the train and held-out folders
must not overlap; sizes and CPU counts must fit between floors and what the host has. A manifest
that breaks a rule is refused with a :class:`~orchestrator.errors.ConfigError` naming the key.
"""

from __future__ import annotations

import hashlib
import os
import re
from pathlib import Path, PurePosixPath
from typing import Literal

from pydantic import Field, ValidationInfo, field_validator

from orchestrator.errors import ConfigError
from orchestrator.result import Goal
from orchestrator.toml_model import Frozen, load_toml_model

MANIFEST = "program.toml"
_MEMORY = re.compile(r"^(\d+(?:\.\d+)?)([kmg]?)b?$", re.IGNORECASE)
_UNITS = {"": 1, "k": 1024, "m": 1024**2, "g": 1024**3}
_OCTAL = re.compile(r"\\([0-7]{3})")
MIN_MEMORY = 64 * 1024**2
"""Smallest memory limit: the harness and a Python interpreter need about 30 MiB (Docker's own
floor, 6 MiB, would only make every run an out-of-memory kill)."""
MIN_DISK = 1024**2
"""Smallest output folder: the harness writes its own small files there."""


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
    format: Literal["native", "openevolve", "shinka"] = "native"
    """``native`` (this project's contract) or a peer's problem run unchanged (docs/peers.md):
    the entrypoint is then the peer's program file, the evaluator the peer's own."""
    isolation: Literal["split", "shared"] = "split"
    """Peer formats: ``split`` runs the variant's program in its own container behind a
    plain-data socket; ``shared`` lets the evaluator import it as the peer does (NOT protected:
    labelled so wherever its results appear)."""
    regions: Literal["none", "evolve-block"] = "none"
    """``evolve-block``: only bytes between ``EVOLVE-BLOCK-START`` and ``EVOLVE-BLOCK-END`` lines
    of the editable files may change; a variant changing anything else is refused before any
    container."""

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
    cpus: float = Field(default=1.0, ge=0.01, le=256)
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
    def _at_least_the_floor(cls, value: str, info: ValidationInfo) -> str:
        floor = MIN_MEMORY if info.field_name == "memory" else MIN_DISK
        if parse_size(value) < floor:
            raise ValueError(f"{value!r} is under the floor of {floor // 1024**2}m")
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


class PeerSection(Frozen):
    """How a peer's problem is evaluated, read from the peer's own config at import."""

    source: str = ""
    """Where the problem was imported from (information only)."""
    tree_sha256: str = ""
    """SHA-256 of the peer's tree as imported (every file but ``program.toml``)."""
    timeout_s: float = Field(default=300, gt=0, le=7 * 24 * 3600)
    """Per evaluation stage (OpenEvolve ``evaluator.timeout``): the stage's process is killed."""
    cascade_evaluation: bool = True
    cascade_thresholds: tuple[float, ...] = (0.5, 0.75, 0.9)
    max_retries: int = Field(default=3, ge=0, le=10)
    max_code_length: int | None = Field(default=None, gt=0)
    """Longest variant (characters of the program file); longer ones are refused."""
    averaging: bool = False
    """Without ``combined_score``, use OpenEvolve's mean of the numeric metrics (explicit only)."""
    requirements: tuple[str, ...] = ()
    """The peer's ``requirements.txt`` lines; installed into the problem's image, offline."""


class Manifest(Frozen):
    program: ProgramSection
    metric: MetricSection
    resources: ResourcesSection = ResourcesSection()
    data: DataSection = DataSection()
    peer: PeerSection = PeerSection()


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
                a named file that does not exist, a path that leads out of the folder (a symlink
                included), overlapping data folders, or resources the host cannot give.
        """
        root = Path(root).resolve()
        path = root / MANIFEST
        if not path.is_file():
            raise ConfigError(f"{root} is not a program: it has no {MANIFEST}")
        if not _inside(path.resolve(), root):
            raise ConfigError(f"{path}: a symlink to {path.resolve()}, outside the program folder")
        manifest = load_toml_model(Manifest, path)
        program = cls(root, manifest)
        program._check_files(path)
        program._check_peer(path)
        program._check_data(path)
        program._check_tree(path)
        check_host_fits(manifest.resources, path)
        return program

    def _inside(self, rel: str, key: str, where: Path) -> Path:
        """``root/rel`` resolved; it must stay inside the program folder."""
        target = (self.root / rel).resolve()
        if not _inside(target, self.root):
            raise ConfigError(f"{where}: {key} {rel!r} leads to {target}, outside {self.root}")
        return target

    def _check_files(self, path: Path) -> None:
        p = self.manifest.program
        named = [("program.entrypoint", p.entrypoint), ("program.evaluator", p.evaluator)]
        named += [("program.editable", rel) for rel in p.editable]
        for key, rel in named:
            if not self._inside(rel, key, path).is_file():
                raise ConfigError(f"{path}: {key} {rel!r} is named but not a file in {self.root}")
        if p.evaluator in p.editable:
            raise ConfigError(f"{path}: the evaluator {p.evaluator!r} cannot be editable")

    def _check_peer(self, path: Path) -> None:
        """A peer program's EVAL stage must outlive one evaluation stage of the peer's."""
        m = self.manifest
        if m.program.format == "native":
            if m.program.isolation != "split" or m.program.regions != "none":
                raise ConfigError(f"{path}: program.isolation and program.regions apply to peer "
                                  "formats only (program.format = \"openevolve\" or \"shinka\")")
            return
        if m.resources.timeout_s <= m.peer.timeout_s:
            raise ConfigError(f"{path}: resources.timeout_s = {m.resources.timeout_s:g} must be "
                              f"more than peer.timeout_s = {m.peer.timeout_s:g} (one evaluation "
                              "stage), or EVAL is killed before the peer's own timeout")

    def _check_data(self, path: Path) -> None:
        resolved = {}
        for key in ("train", "heldout"):
            rel = getattr(self.manifest.data, key)
            if rel is None:
                continue
            target = self._inside(rel, f"data.{key}", path)
            if not target.is_dir():
                raise ConfigError(f"{path}: data.{key} {rel!r} is not a folder in {self.root}")
            if target == self.root:
                raise ConfigError(f"{path}: data.{key} {rel!r} is the whole program folder")
            inner = _submount(target)
            if inner:
                raise ConfigError(f"{path}: data.{key} {rel!r} has another file system mounted "
                                  f"inside it ({inner}): it would be shown to the stage")
            resolved[key] = target
        p = self.manifest.program
        named = [("program.entrypoint", p.entrypoint), ("program.evaluator", p.evaluator)]
        named += [("program.editable", rel) for rel in p.editable]
        for key, rel in named:
            target = (self.root / rel).resolve()
            for data_key, folder in resolved.items():
                if _inside(target, folder):
                    raise ConfigError(f"{path}: {key} {rel!r} lies in data.{data_key}: data "
                                      "never goes into an image or a prompt")
        if len(resolved) == 2:
            train, heldout = resolved["train"], resolved["heldout"]
            if _inside(train, heldout) or _inside(heldout, train):
                raise ConfigError(f"{path}: data.train ({train}) and data.heldout ({heldout}) "
                                  "overlap: the train stage would see held-out data")

    def _check_tree(self, path: Path) -> None:
        """Every file that goes into an image or a prompt must be the folder's own: a symlink in
        the tree that leads out (to a host file or folder) refuses the program."""
        for folder, dirs, files in os.walk(self.root):
            for name in dirs + files:
                entry = Path(folder, name)
                if entry.is_symlink() and not _inside(entry.resolve(), self.root):
                    rel = entry.relative_to(self.root).as_posix()
                    raise ConfigError(f"{path}: {rel!r} is a symlink to {entry.resolve()}, "
                                      "outside the program folder")

    def data_path(self, stage: str) -> Path | None:
        """The folder to mount read-only for ``stage`` ("train" or "eval"), resolved, checked
        again now (the folder may have changed since the manifest was loaded).

        Raises:
            ConfigError: it leads out of the program folder or is not a folder.
        """
        key = "train" if stage == "train" else "heldout"
        rel = getattr(self.manifest.data, key)
        if rel is None:
            return None
        where = self.root / MANIFEST
        target = self._inside(rel, f"data.{key}", where)
        if not target.is_dir():
            raise ConfigError(f"{where}: data.{key} {rel!r} is not a folder")
        return target

    @property
    def name(self) -> str:
        return self.manifest.program.name

    def source_files(self) -> dict[str, str]:
        """The editable files as shipped: the seed variant's source."""
        where = self.root / MANIFEST
        return {rel: self._inside(rel, "program.editable", where).read_text()
                for rel in self.manifest.program.editable}

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
        for folder, dirs, names in os.walk(self.root):  # symlinked folders are not followed
            dirs.sort()
            for name in names:
                path = Path(folder, name)
                rel = path.relative_to(self.root).as_posix()
                if "__pycache__" in path.parts or not path.is_file():
                    continue
                if rel not in editable and any(rel == d or rel.startswith(d + "/") for d in data):
                    continue
                if not _inside(path.resolve(), self.root):
                    raise ConfigError(f"{self.root / MANIFEST}: {rel!r} is a symlink to "
                                      f"{path.resolve()}, outside the program folder")
                files.append(rel)
        return sorted(files)

def _inside(path: Path, root: Path) -> bool:
    """Whether ``path`` is ``root`` or below it (both already resolved)."""
    return path == root or root in path.parents


def _submount(folder: Path) -> str:
    """A mount point strictly inside ``folder`` ('' when none, or when the host cannot tell)."""
    try:
        lines = Path("/proc/self/mountinfo").read_text().splitlines()
    except OSError:
        return ""
    for line in lines:
        fields = line.split()
        if len(fields) > 4:
            point = Path(_OCTAL.sub(lambda m: chr(int(m.group(1), 8)), fields[4]))
            if folder in point.parents:
                return str(point)
    return ""


def host_cpus() -> int:
    """CPU cores this host has (what the engine's ``NCPU`` reports on a local engine)."""
    return os.cpu_count() or 1


def host_memory() -> int:
    """Bytes of RAM this host has (0 when it cannot tell)."""
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError):
        return 0


def check_host_fits(resources: ResourcesSection, where: str | Path, *,
                    cpus: int | None = None, memory: int | None = None) -> None:
    """Refuse resources this host (or an engine with ``cpus`` cores and ``memory`` bytes) cannot
    give: the engine would refuse the container, and a refusal is the manifest's fault, never an
    engine failure to retry.

    Raises:
        ConfigError: naming ``resources.cpus``, ``resources.memory`` or ``resources.disk``.
    """
    cpus = cpus or host_cpus()
    memory = memory or host_memory()
    if resources.cpus > cpus:
        raise ConfigError(f"{where}: resources.cpus = {resources.cpus:g} but this host has "
                          f"{cpus} CPU(s)")
    for key, floor in (("memory", MIN_MEMORY), ("disk", MIN_DISK)):
        size = getattr(resources, f"{key}_bytes")
        if size < floor:  # a model built without validation still meets the floors
            raise ConfigError(f"{where}: resources.{key} = {getattr(resources, key)!r} is under "
                              f"the floor of {floor // 1024**2}m")
        if memory and size > memory:
            raise ConfigError(f"{where}: resources.{key} = {getattr(resources, key)!r} is more "
                              f"than this host's {memory // 1024**2} MiB of memory")


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


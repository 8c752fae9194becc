"""The two peer formats: how to recognise a problem folder and read the peer's own settings.

* OpenEvolve: ``initial_program.py`` (EVOLVE-BLOCK markers), ``evaluator.py`` with
  ``evaluate(program_path)`` or the cascade ``evaluate_stage1/2/3``, optional ``config.yaml``
  (``evaluator.timeout``, ``evaluator.cascade_evaluation``, ``evaluator.cascade_thresholds``,
  ``evaluator.max_retries``, ``max_code_length``).
* ShinkaEvolve: ``initial.py`` (EVOLVE-BLOCK markers) and ``evaluate.py``, run as a script with
  ``--program_path`` and ``--results_dir``, writing ``metrics.json`` and ``correct.json``.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from orchestrator.errors import ConfigError

Kind = Literal["openevolve", "shinka"]
KINDS: tuple[Kind, ...] = ("openevolve", "shinka")
MANIFEST = "program.toml"
SKIP = {"__pycache__", ".git"}


@dataclass
class PeerProblem:
    kind: Kind
    root: Path
    program: str
    evaluator: str
    settings: dict[str, Any] = field(default_factory=dict)
    requirements: list[str] = field(default_factory=list)


def _initial(root: Path, stem: str) -> str | None:
    if (root / f"{stem}.py").is_file():
        return f"{stem}.py"
    others = sorted(p.name for p in root.glob(f"{stem}.*") if p.is_file())
    return others[0] if others else None


def detect(root: Path) -> Kind | None:
    """The format of a problem folder, or None."""
    if (root / "evaluator.py").is_file() and _initial(root, "initial_program"):
        return "openevolve"
    if (root / "evaluate.py").is_file() and _initial(root, "initial"):
        return "shinka"
    return None


def read(kind: Kind, root: Path) -> PeerProblem:
    """The problem in ``root`` as ``kind``, its settings read from the peer's config.

    Raises:
        ConfigError: the folder is not that format, or its config is malformed (the key named).
    """
    found = detect(root)
    if found != kind:
        expected = ("evaluator.py and initial_program.py" if kind == "openevolve"
                    else "evaluate.py and initial.py")
        raise ConfigError(f"{root} is not an {kind} problem: it needs {expected}"
                          + (f" (it looks like {found})" if found else ""))
    if kind == "openevolve":
        problem = PeerProblem(kind, root, _initial(root, "initial_program") or "",
                              "evaluator.py", _openevolve_settings(root))
    else:
        problem = PeerProblem(kind, root, _initial(root, "initial") or "", "evaluate.py",
                              {"timeout_s": 600.0, "cascade_evaluation": False, "max_retries": 0})
    problem.requirements = _requirements(root)
    return problem


def _openevolve_settings(root: Path) -> dict[str, Any]:
    settings: dict[str, Any] = {"timeout_s": 300.0, "cascade_evaluation": True,
                                "cascade_thresholds": [0.5, 0.75, 0.9], "max_retries": 3,
                                "max_code_length": 10000}
    path = root / "config.yaml"
    if not path.is_file():
        return settings
    import yaml

    try:
        config = yaml.safe_load(path.read_text()) or {}
    except (yaml.YAMLError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: not valid YAML: {str(exc)[:300]}") from None
    if not isinstance(config, dict):
        raise ConfigError(f"{path}: the top level is not a mapping")
    evaluator = config.get("evaluator") or {}
    if not isinstance(evaluator, dict):
        raise ConfigError(f"{path}: evaluator is not a mapping")
    for key, name, kind in (("timeout", "timeout_s", float), ("max_retries", "max_retries", int),
                            ("cascade_evaluation", "cascade_evaluation", bool)):
        if key in evaluator and evaluator[key] is not None:
            value = evaluator[key]
            if kind is bool and not isinstance(value, bool) or kind is not bool and (
                    isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0):
                raise ConfigError(f"{path}: evaluator.{key} = {value!r} is not a valid "
                                  f"{kind.__name__}")
            settings[name] = kind(value)
    if evaluator.get("cascade_thresholds") is not None:
        thresholds = evaluator["cascade_thresholds"]
        if not isinstance(thresholds, list) or not all(
                isinstance(t, (int, float)) and not isinstance(t, bool) for t in thresholds):
            raise ConfigError(f"{path}: evaluator.cascade_thresholds = {thresholds!r} is not a "
                              "list of numbers")
        settings["cascade_thresholds"] = [float(t) for t in thresholds]
    if config.get("max_code_length") is not None:
        length = config["max_code_length"]
        if isinstance(length, bool) or not isinstance(length, int) or length <= 0:
            raise ConfigError(f"{path}: max_code_length = {length!r} is not a positive integer")
        settings["max_code_length"] = length
    return settings


def _requirements(root: Path) -> list[str]:
    path = root / "requirements.txt"
    if not path.is_file():
        return []
    lines = []
    for raw in path.read_text().splitlines():
        line = raw.split("#", 1)[0].strip()
        if line:
            if line.startswith("-"):
                raise ConfigError(f"{path}: {line!r}: only plain requirement lines are supported "
                                  "(packages come from the wheelhouse, offline)")
            lines.append(line)
    return lines


def files(root: Path) -> list[str]:
    """The tree's files, relative, sorted (``program.toml`` and caches left out)."""
    out = []
    for folder, dirs, names in os.walk(root):
        dirs[:] = sorted(d for d in dirs if d not in SKIP)
        for name in names:
            rel = Path(folder, name).relative_to(root).as_posix()
            if rel != MANIFEST:
                out.append(rel)
    return sorted(out)


def tree_sha256(root: Path) -> str:
    """SHA-256 over every file's relative path and bytes (symlinks by their target text)."""
    digest = hashlib.sha256()
    for rel in files(root):
        path = root / rel
        body = os.readlink(path).encode() if path.is_symlink() else path.read_bytes()
        digest.update(f"{rel}\0{len(body)}\0".encode())
        digest.update(body)
    return digest.hexdigest()

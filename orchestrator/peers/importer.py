"""``import_problem``: an OpenEvolve or ShinkaEvolve problem folder as a selfprog program.

The peer's tree is copied untouched (licence files included) into the program folder, beside a
``program.toml`` that names the format, ``regions = "evolve-block"``, the isolation and a
``[peer]`` section read from the peer's config. The seed copy the evolution edits is the peer's
own initial program in that copy (``program.editable``); the shipped file is the seed.

Before the program is kept, split isolation must be able to run it (:mod:`.feasibility`), and the
seed must score the same in split isolation as the peer's own way (the evaluator importing the
program in its process, in a throw-away container) within noise.
"""

from __future__ import annotations

import json
import re
import shutil
import statistics
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from orchestrator.errors import ConfigError
from orchestrator.peers import feasibility, formats
from orchestrator.program import Program
from orchestrator.result import Status, VariantResult

Runs = Callable[[Program, int, Path], VariantResult]
METRIC = "combined_score"


@dataclass
class SeedCheck:
    split: list[float] = field(default_factory=list)
    shared: list[float] = field(default_factory=list)
    results: list[VariantResult] = field(default_factory=list)
    """Every seed run's record, split ones first."""
    folder: str = ""
    """Where the seed runs' folders are kept (logs, records)."""

    def summary(self) -> str:
        return (f"split {_figure(self.split)} vs the peer's own way {_figure(self.shared)} "
                f"({len(self.split)} run(s) each; records in {self.folder})")


def _figure(values: list[float]) -> str:
    if not values:
        return "n/a"
    if len(values) == 1:
        return f"{values[0]:.6g}"
    return f"{statistics.fmean(values):.6g} ± {statistics.pstdev(values):.2g}"


def _name(root: Path) -> str:
    name = re.sub(r"[^a-z0-9_.-]+", "-", root.name.lower()).strip("-._") or "peer"
    return name[:64]


def _toml(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_toml(v) for v in value) + "]"
    return json.dumps(str(value))  # a JSON string is a valid TOML basic string


def manifest_text(problem: formats.PeerProblem, name: str, isolation: str, sha: str,
                  averaging: bool) -> str:
    settings = problem.settings
    stages = 3 if settings.get("cascade_evaluation") else int(settings.get("max_retries", 0)) + 1
    timeout = min(7 * 24 * 3600.0, float(settings["timeout_s"]) * stages + 60)
    peer = {"source": str(problem.root), "tree_sha256": sha,
            "timeout_s": float(settings["timeout_s"]),
            "cascade_evaluation": bool(settings.get("cascade_evaluation", False)),
            "cascade_thresholds": settings.get("cascade_thresholds", [0.5, 0.75, 0.9]),
            "max_retries": int(settings.get("max_retries", 0)), "averaging": averaging,
            "requirements": problem.requirements}
    if settings.get("max_code_length"):
        peer["max_code_length"] = int(settings["max_code_length"])
    lines = ["# Written by `selfprog import`; the peer's files beside it are as imported.",
             "[program]", f"name = {_toml(name)}", f"format = {_toml(problem.kind)}",
             f"entrypoint = {_toml(problem.program)}", f"evaluator = {_toml(problem.evaluator)}",
             f"editable = [{_toml(problem.program)}]", 'regions = "evolve-block"',
             f"isolation = {_toml(isolation)}",
             f"description = {_toml(f'{problem.kind} problem imported from {problem.root.name}')}",
             "", "[metric]", f'name = "{METRIC}"', 'goal = "maximize"', "",
             "[resources]", "cpus = 1.0", 'memory = "2g"', f"timeout_s = {timeout:g}",
             "pids = 256", 'disk = "64m"', "", "[peer]"]
    lines += [f"{key} = {_toml(value)}" for key, value in peer.items()]
    return "\n".join(lines) + "\n"


def import_problem(kind: formats.Kind, src: str | Path, out: str | Path | None = None, *,
                   isolation: str = "split", averaging: bool = False, checks: int = 3,
                   runs: Runs | None = None, noise: float = 0.0) -> tuple[Program, SeedCheck]:
    """Import the peer problem in ``src`` as a program in ``out``.

    Args:
        kind: "openevolve" or "shinka".
        isolation: "split" (protected), or "shared" (the peer's own way, labelled not protected).
        averaging: use OpenEvolve's mean of the numeric metrics when there is no combined_score.
        checks: seed runs in each mode for the seed check (0: no check).
        runs: how one seed run is made (the CLI passes the Docker runner's ``run_seed``);
            needed when ``checks`` > 0.
        noise: an absolute tolerance added to the measured noise.

    Raises:
        ConfigError: not that format, a malformed config, what split isolation cannot run (with
            the reasons), an output folder in the way, or a seed check that differs (both
            figures named). Nothing is left at ``out`` then.
    """
    if kind not in formats.KINDS:
        raise ConfigError(f"unknown peer format {kind!r}: choose one of {', '.join(formats.KINDS)}")
    if isolation not in ("split", "shared"):
        raise ConfigError(f"isolation {isolation!r}: choose split or shared")
    root = Path(src).resolve()
    if not root.is_dir():
        raise ConfigError(f"{root} is not a folder")
    problem = formats.read(kind, root)
    if (root / formats.MANIFEST).exists():
        raise ConfigError(f"{root} already has a {formats.MANIFEST}: load it as a program")
    if isolation == "split":
        why = feasibility.reasons(root / problem.evaluator, root / problem.program)
        if why:
            raise ConfigError("split isolation cannot run this problem: " + "; ".join(why)
                              + ". Import it with --isolation shared to run it the peer's way "
                              "(its scores are then labelled NOT protected)")
    target = Path(out) if out is not None else Path("programs") / "imported" / _name(root)
    target = target.resolve()
    if target.exists() and any(target.iterdir()):
        raise ConfigError(f"{target} exists and is not empty")
    try:
        shutil.copytree(root, target, symlinks=True, dirs_exist_ok=True,
                        ignore=shutil.ignore_patterns(*formats.SKIP))
        sha = formats.tree_sha256(target)
        (target / formats.MANIFEST).write_text(
            manifest_text(problem, _name(root), isolation, sha, averaging))
        program = Program.load(target)
        check = seed_check(program, checks, runs, noise) if checks else SeedCheck()
    except BaseException:
        shutil.rmtree(target, ignore_errors=True)
        raise
    return program, check


def with_isolation(program: Program, isolation: str) -> Program:
    section = program.manifest.program.model_copy(update={"isolation": isolation})
    return Program(program.root, program.manifest.model_copy(update={"program": section}))


def seed_check(program: Program, n: int, runs: Runs | None = None,
               noise: float = 0.0) -> SeedCheck:
    """Score the seed ``n`` times split and ``n`` times the peer's own way; they must agree.

    Raises:
        ConfigError: a run that is not ``ok`` in one mode, or means further apart than three
            times the larger spread plus ``noise`` (both figures in the message).
    """
    if runs is None:
        raise ConfigError("the seed check needs a way to run the seed (runs=...)")
    check = SeedCheck()
    scratch = check.folder = tempfile.mkdtemp(prefix="selfprog-import-")  # kept, to inspect
    for mode, values in (("split", check.split), ("shared", check.shared)):
        variant_program = with_isolation(program, mode)
        for seed in range(n):
            result = runs(variant_program, seed, Path(scratch) / f"{mode}-{seed}")
            check.results.append(result)
            if result.status is not Status.OK or METRIC not in result.metrics:
                raise ConfigError(f"the seed check failed: the seed run {mode} (seed {seed}) "
                                  f"ended {result.status}: {result.error}")
            values.append(result.metrics[METRIC])
    spread = max(statistics.pstdev(check.split) if n > 1 else 0.0,
                 statistics.pstdev(check.shared) if n > 1 else 0.0)
    gap = abs(statistics.fmean(check.split) - statistics.fmean(check.shared))
    allowed = 3 * spread + noise + 1e-9 * max(1.0, abs(statistics.fmean(check.shared)))
    if gap > allowed:
        raise ConfigError(f"the seed check failed: {check.summary()}: a difference of {gap:.6g} "
                          f"beyond the noise ({allowed:.3g}); split isolation does not reproduce "
                          "the peer's evaluation of this problem")
    return check

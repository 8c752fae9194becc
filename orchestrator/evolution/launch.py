"""``selfprog evolve``: open (or reopen) a run and drive the loop on a backend to its budget.

The backend (the local Docker engine, later a cluster) arrives built: this module sees only the
``Backend`` and ``Runner`` Protocols and the ``Generator`` the factory makes, so it imports no
Docker code and starts no engine.
"""

from __future__ import annotations

import json
import logging
import os
import secrets
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from orchestrator.errors import ConfigError, Interrupted, NoProposalsError, StoreError
from orchestrator.evolution.config import EvolveConfig, load_config
from orchestrator.evolution.loop import Evolution, Outcome
from orchestrator.evolution.slots import Slot, plan_slots
from orchestrator.generators.auto import make_generator
from orchestrator.program import Program
from orchestrator.runner import Backend
from orchestrator.runs.report import write_report
from orchestrator.runs.store import DB, Store
from orchestrator.runs.summary import write_outputs
from orchestrator.task import TASK_FILE

log = logging.getLogger(__name__)


class Observer(Protocol):
    """Watches a run: the CLI's live view is one."""

    def start(self, evolution: Evolution) -> None: ...

    def tick(self, evolution: Evolution) -> None: ...

    def stop(self) -> None: ...


@dataclass(frozen=True)
class Finished:
    outcome: Outcome
    folder: Path
    report: Path
    summary: dict


def find_run(run: str | Path, runs_dir: Path = Path("runs")) -> Path:
    """A run folder from its id (under ``runs_dir``) or its path.

    Raises:
        StoreError: no such run.
    """
    for candidate in (Path(run), runs_dir / str(run)):
        if (candidate / DB).is_file():
            return candidate
    raise StoreError(f"no run {run!r} (looked in {runs_dir} and at the path itself)")


def open_run(config: Path | None, overrides: dict[str, Any], resume: str | None
             ) -> tuple[EvolveConfig, Store, Program]:
    """Create a run from a config, or reopen one with its stored config (plus overrides)."""
    if resume is not None:
        store = Store(find_run(resume, load_config(config, overrides).runs_dir))
        stored = json.loads(store.run_info()["config"])
        cfg = load_config(None, overrides, base=stored)
        return cfg, store, Program.load(cfg.program)
    cfg = load_config(config, overrides)
    program = Program.load(cfg.program)
    cfg = cfg.model_copy(update={"program": program.root})
    run_id = cfg.run_id or f"{time.strftime('%Y%m%d-%H%M%S')}-{secrets.token_hex(2)}"
    folder = cfg.runs_dir / run_id
    if (folder / DB).exists():
        raise StoreError(f"run {run_id} exists in {cfg.runs_dir}: resume it with --resume "
                         f"{run_id}, or choose another run_id")
    store = Store(folder, create=True)
    store.init_run(program.root, cfg.model_dump_json())
    return cfg, store, program


def run_evolution(config: Path | None, overrides: dict[str, Any], *, backend: Backend,
                  resume: str | None = None, summary_md: Path | None = None,
                  observer: Observer | None = None) -> Finished:
    """Run (or resume) an evolution to its budget; write the summary, best.diff and report.

    Args:
        config: a TOML config; None runs on the embedded defaults.
        overrides: dotted keys over the config (or over a resumed run's stored config).
        backend: where variants run; the caller owns it (and closes it).
        resume: a run id or folder to continue.
        summary_md: also append the markdown summary here (e.g. ``$GITHUB_STEP_SUMMARY``).
        observer: told when the run starts, after each step, and when it stops.

    Raises:
        ConfigError: a bad config, program or slot plan (exit code 2).
        EngineError: the engine or the images failed (exit code 3).
        StoreError: the run to resume does not exist (exit code 1).
        Interrupted: Ctrl-C; the run's containers are removed and it resumes later (exit 130).
    """
    cfg, store, program = open_run(config, overrides, resume)
    no_proposals: str | None = None
    try:
        generator = make_generator(cfg.generator)
        check_generator(generator)
        check_from_spec(cfg, program, generator.name)
        slots = _slots(cfg, program, backend)
        runner = backend.runner(gpu=any(s.gpu_ids for s in slots))
        evolution = Evolution(cfg, store, program, runner, generator, slots, sweep=backend.sweep)
        log.info("run %s: %s, %d slot(s), folder %s", store.run_id, program.name, len(slots),
                 store.folder)
        if observer is not None:
            observer.start(evolution)
        try:
            outcome = evolution.run(observer.tick if observer is not None else None)
        finally:
            if observer is not None:
                observer.stop()
        summary = write_outputs(store, program, summary_md)
        report = write_report(store, program)
        no_proposals = _nothing_proposed(store)
    except KeyboardInterrupt:  # stop this run's containers now; pending work waits for --resume
        backend.sweep(store.run_id)
        store.set_run(state="interrupted")
        raise Interrupted(f"interrupted: resume with selfprog evolve --resume {store.run_id}"
                          ) from None
    finally:
        store.close()
    if no_proposals is not None:
        raise NoProposalsError(f"{no_proposals}; stopped: {outcome.reason}; the run is stored: "
                               f"{report}")
    return Finished(outcome, store.folder, report, summary)


def _slots(cfg: EvolveConfig, program: Program, backend: Backend) -> list[Slot]:
    """A backend that knows its slots (a cluster: one per node agent) plans them; the local one
    divides this host."""
    plan = getattr(backend, "plan_slots", None)
    if callable(plan):
        slots: list[Slot] = plan(cfg.slots, program)
        return slots
    return plan_slots(cfg.slots, program, len(os.sched_getaffinity(0)), backend.host_gpus())


def stored_config(config: Path | None, overrides: dict[str, Any], resume: str | None
                  ) -> EvolveConfig:
    """The config a run will have, without opening it for writing: a resumed run's stored one
    (plus overrides), else the file's. The CLI reads the backend from it before the run opens.

    Raises:
        ConfigError: a bad config; StoreError: the run to resume does not exist.
    """
    if resume is None:
        return load_config(config, overrides)
    store = Store(find_run(resume, load_config(config, overrides).runs_dir))
    try:
        return load_config(None, overrides, base=json.loads(store.run_info()["config"]))
    finally:
        store.close()


SPEC_WRITERS = ("hf", "openai")
"""Backends that can write a program from its spec (they follow instructions)."""


def check_from_spec(cfg: EvolveConfig, program: Program, backend: str) -> None:
    """Refuse a ``from_spec`` run that cannot be one: a program without ``task.toml``, or a
    backend that only edits existing source.

    Raises:
        ConfigError: naming what to change.
    """
    if not cfg.from_spec:
        return
    if not (program.root / TASK_FILE).is_file():
        raise ConfigError(f"--from-spec needs a task: {program.root} has no {TASK_FILE} "
                          "(see selfprog new-task)")
    if backend not in SPEC_WRITERS:
        raise ConfigError(f"--from-spec needs a backend that writes programs from a spec "
                          f"({' or '.join(SPEC_WRITERS)}); the generator is {backend!r}")


def check_generator(generator: object) -> None:
    """A backend that talks to a server checks it first (``check``: the endpoint answers, the
    model exists), so a wrong URL fails in seconds, before any container is built.

    Raises:
        ConfigError: the check failed; the message names the setting to fix.
    """
    check = getattr(generator, "check", None)
    if callable(check):
        log.info("generator endpoint answers: %s", check())


def _nothing_proposed(store: Store) -> str | None:
    """Why the run made no variant at all although its generator was called, or None."""
    totals = store.call_totals()
    if totals["calls"] == 0 or totals["variants"] > 0:
        return None
    reasons = ", ".join(f"{n} {why}" for why, n in totals["rejections"].items())
    return (f"the generator made no valid proposal in {totals['calls']} call(s) ({reasons}); "
            f"last: {(store.last_rejection() or '?')[:300]}")

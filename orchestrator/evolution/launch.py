"""``selfprog evolve``: open (or reopen) a run and drive the loop on a backend to its budget.

The backend (the local Docker engine, later a cluster) arrives built: this module sees only the
``Backend`` and ``Runner`` Protocols and the ``Generator`` the factory makes, so it imports no
Docker code and starts no engine.
"""

from __future__ import annotations

import logging
import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from orchestrator.errors import (
    ConfigError,
    Interrupted,
    NoProposalsError,
    SelfprogError,
)
from orchestrator.evolution.config import EvolveConfig
from orchestrator.evolution.loop import Evolution, Outcome
from orchestrator.evolution.opening import Opened, create_run, load_run_config, resume_run
from orchestrator.evolution.signals import Forced, Stopped, trapped
from orchestrator.evolution.slots import Slot, plan_slots
from orchestrator.generators.auto import make_generator
from orchestrator.program import Program
from orchestrator.runner import Backend
from orchestrator.runs.mlflow_export import MlflowTracker
from orchestrator.runs.report import write_report
from orchestrator.runs.step_summary import StepSummary
from orchestrator.runs.store import Store
from orchestrator.runs.summary import write_outputs
from orchestrator.task import TASK_FILE

log = logging.getLogger(__name__)


class Observer(Protocol):
    """Watches a run: the CLI's live view is one."""

    def start(self, evolution: Evolution) -> None: ...

    def tick(self, evolution: Evolution) -> None: ...

    def stop(self) -> None: ...


@dataclass(frozen=True)
class Both:
    """Two observers as one (the CLI's view and the MLflow tracker), the first told first."""

    first: Observer | None
    second: Observer

    def start(self, evolution: Evolution) -> None:
        if self.first is not None:
            self.first.start(evolution)
        self.second.start(evolution)

    def tick(self, evolution: Evolution) -> None:
        if self.first is not None:
            self.first.tick(evolution)
        self.second.tick(evolution)

    def stop(self) -> None:
        try:
            if self.first is not None:
                self.first.stop()
        finally:
            self.second.stop()


@dataclass(frozen=True)
class Finished:
    outcome: Outcome
    folder: Path
    report: Path
    summary: dict


def run_evolution(config: Path | None, overrides: dict[str, Any], *, backend: Backend,
                  resume: str | None = None, summary_md: StepSummary | None = None,
                  observer: Observer | None = None, accept_changed_program: bool = False
                  ) -> Finished:
    """Run (or resume) an evolution to its budget; write the summary, best.diff and report.

    Everything that can fail before the first variant (config, program, generator, slot plan,
    engine, runtime image) is checked before the run is created, so a failed start leaves no
    run behind. SIGINT and SIGTERM stop the run cleanly (see ``orchestrator.evolution.signals``).

    Args:
        config: a TOML config; None runs on the embedded defaults.
        overrides: dotted keys over the config (or over a resumed run's stored config).
        backend: where variants run; the caller owns it (and closes it).
        resume: a run id or folder to continue.
        summary_md: told the run's folder once it exists and why the loop stopped, so it can
            write the job summary whatever happens (``--summary-md``).
        observer: told when the run starts, after each step, and when it stops.
        accept_changed_program: resume although the program's files changed (recorded).

    Raises:
        ConfigError: a bad config, program or slot plan, or a changed program (exit code 2).
        EngineError: the engine or the images failed (exit code 3).
        StoreError: the run to resume does not exist, or another process drives it (exit 1).
        NoProposalsError: the generator can propose nothing for this program (exit code 5).
        Interrupted: SIGINT (exit 130) or SIGTERM (exit 143); the run's containers are removed,
            it is marked ``interrupted`` and resumes later.
    """
    opened: Opened | None = None
    evolution: Evolution | None = None
    with trapped():
        try:
            cfg, program, folder = load_run_config(config, overrides, resume)
            if folder is not None:
                opened = resume_run(cfg, program, folder,
                                    accept_changed_program=accept_changed_program)
            generator = make_generator(cfg.generator)
            check_generator(generator)
            check_from_spec(cfg, program, generator.name)
            check_can_propose(generator, program)
            slots = _slots(cfg, program, backend)
            runner = backend.runner(gpu=any(s.gpu_ids for s in slots))
            if opened is None:
                opened = create_run(cfg, program)
            store = opened.store
            if summary_md is not None:
                summary_md.attach(store.folder, program)
            if cfg.tracking.mlflow:
                observer = Both(observer, MlflowTracker(store.folder, program,
                                                        cfg.tracking.mlflow_uri))
            evolution = Evolution(cfg, store, program, runner, generator, slots,
                                  sweep=backend.sweep)
            log.info("run %s: %s, %d slot(s), folder %s", store.run_id, program.name,
                     len(slots), store.folder)
            outcome = _drive(evolution, observer)
            _sweep_after(backend, store.run_id)
            summary = write_outputs(store, program, reason=outcome.reason)
            if summary_md is not None:
                summary_md.stopped(outcome.reason)
            report = write_report(store, program)
            no_proposals = _nothing_proposed(store)
        except Stopped as stop:
            raise _stopped(stop, opened, evolution, backend) from None
        except Exception:
            if opened is not None:
                _failed(opened)
            raise
        finally:
            if opened is not None:
                opened.store.close()
                opened.lock.release()
    if no_proposals is not None:
        raise NoProposalsError(f"{no_proposals}; stopped: {outcome.reason}; the run is stored: "
                               f"{report}")
    return Finished(outcome, store.folder, report, summary)


def _drive(evolution: Evolution, observer: Observer | None) -> Outcome:
    if observer is not None:
        observer.start(evolution)
    try:
        return evolution.run(observer.tick if observer is not None else None)
    finally:
        if observer is not None:
            observer.stop()


def _stopped(stop: Stopped, opened: Opened | None, evolution: Evolution | None,
             backend: Backend) -> Interrupted:
    """Clean up after SIGINT/SIGTERM: no slot starts anything more, every container and volume
    of the run goes, the run is marked ``interrupted`` and its summaries are written. A second
    signal (:class:`Forced`) cuts this to the removal alone."""
    if opened is None:
        return Interrupted(f"interrupted ({stop.name}) before the run was created: nothing "
                           "was stored", exit_code=stop.exit_code)
    store = opened.store
    try:
        if evolution is not None:
            evolution.pool.close()
        backend.stop_run(store.run_id)
        if evolution is not None:  # the slots' runs end as their containers vanish
            evolution.pool.join(timeout=30.0)
        backend.stop_run(store.run_id)  # volumes their containers held until now
        store.set_run(state="interrupted")
        store.note("interrupted", f"{stop.name}: stopped, containers removed")
        write_outputs(store, opened.program, reason=f"interrupted ({stop.name})")
        write_report(store, opened.program)
    except Forced:
        backend.stop_run(store.run_id, settle_s=3.0)
        store.set_run(state="interrupted")
        store.note("interrupted", f"{stop.name}, then a second signal: containers removed, "
                   "summaries skipped")
    return Interrupted(f"interrupted ({stop.name}): the run's containers are removed; resume "
                       f"with: selfprog evolve --resume {store.run_id} --runs-dir "
                       f"{store.folder.parent}", exit_code=stop.exit_code)


def _failed(opened: Opened) -> None:
    """A run that raised: a new one with nothing recorded is removed (a failed start leaves
    no run behind); any other is marked ``failed`` (it resumes) with its summaries written."""
    store = opened.store
    if opened.new and store.seed_variant() is None:
        store.close()
        shutil.rmtree(store.folder, ignore_errors=True)
        return
    store.set_run(state="failed")
    try:
        write_outputs(store, opened.program, reason="failed")
    except (OSError, SelfprogError) as exc:  # the error that stopped the run is the one to see
        log.warning("the summaries of the failed run were not written: %s", exc)


def check_can_propose(generator: object, program: Program) -> None:
    """A generator that can tell it will never propose anything for this program (``mutate``
    on a program that declares no search setting) stops the run before it starts.

    Raises:
        NoProposalsError: with the generator's reason.
    """
    cannot = getattr(generator, "cannot_propose", None)
    reason = cannot(program) if callable(cannot) else None
    if reason:
        raise NoProposalsError(f"nothing to evolve: {reason}")


def _slots(cfg: EvolveConfig, program: Program, backend: Backend) -> list[Slot]:
    """A backend that knows its slots (a cluster: one per node agent) plans them; the local one
    divides this host."""
    plan = getattr(backend, "plan_slots", None)
    if callable(plan):
        slots: list[Slot] = plan(cfg.slots, program)
        return slots
    return plan_slots(cfg.slots, program, len(os.sched_getaffinity(0)), backend.host_gpus())


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


def _sweep_after(backend: Backend, run_id: str) -> None:
    """At a normal end no container of the run should exist; one can, on a cluster, when a
    node died with a stage running (its agent's process outlived the first sweep): sweep once
    more, now that every slot is idle. A failure here is a warning: the run itself is done."""
    try:
        removed = backend.sweep(run_id)
    except SelfprogError as exc:
        log.warning("the sweep after run %s failed: %s", run_id, exc)
        return
    if removed:
        log.info("run %s: removed what a lost stage left: %s", run_id, ", ".join(removed))


def _nothing_proposed(store: Store) -> str | None:
    """Why the run made no variant at all although its generator was called, or None."""
    totals = store.call_totals()
    if totals["calls"] == 0 or totals["variants"] > 0:
        return None
    reasons = ", ".join(f"{n} {why}" for why, n in totals["rejections"].items())
    return (f"the generator made no valid proposal in {totals['calls']} call(s) ({reasons}); "
            f"last: {(store.last_rejection() or '?')[:300]}")

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
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from orchestrator.errors import (
    ConfigError,
    Interrupted,
    NoProposalsError,
    SelfprogError,
    StoreError,
)
from orchestrator.evolution.config import EvolveConfig, load_config
from orchestrator.evolution.loop import Evolution, Outcome
from orchestrator.evolution.signals import Forced, Stopped, trapped
from orchestrator.evolution.slots import plan_slots
from orchestrator.generators.auto import make_generator
from orchestrator.program import Program
from orchestrator.runner import Backend
from orchestrator.runs.lock import RunLock, held
from orchestrator.runs.report import write_report
from orchestrator.runs.snapshot import COPY, copy_program, program_hash
from orchestrator.runs.store import DB, Store, find_run
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


@dataclass
class Opened:
    """A run this process drives: its config, store, program, and the lock that says so."""

    cfg: EvolveConfig
    store: Store
    program: Program
    lock: RunLock
    new: bool


def load_run_config(config: Path | None, overrides: dict[str, Any], resume: str | None
                    ) -> tuple[EvolveConfig, Program, Path | None]:
    """The config and program of a new run, or of the run to resume (its stored config plus
    the overrides) and its folder. Nothing is written.

    Raises:
        ConfigError: a bad config or program.
        StoreError: the run to resume does not exist.
    """
    if resume is None:
        cfg = load_config(config, overrides)
        program = Program.load(cfg.program)
        return cfg.model_copy(update={"program": program.root}), program, None
    folder = find_run(resume, load_config(config, overrides).runs_dir)
    reader = Store(folder)
    try:
        stored = json.loads(reader.run_info()["config"])
    finally:
        reader.close()
    cfg = load_config(None, overrides, base=stored)
    return cfg, Program.load(cfg.program), folder


def create_run(cfg: EvolveConfig, program: Program) -> Opened:
    """Create a run in one step: it exists whole (resumable) or not at all.

    The folder is made under a hidden staging name (locked, the program copied in, the store
    and its run row written) and renamed into place last, so a kill at any moment leaves either
    a run that resumes or a staging folder that the next start of that id removes.

    Raises:
        StoreError: the run id exists (resume it).
        RunLockedError: a live process drives a run of that id (the message names its pid).
    """
    run_id = cfg.run_id or f"{time.strftime('%Y%m%d-%H%M%S')}-{secrets.token_hex(2)}"
    folder = cfg.runs_dir / run_id
    if folder.exists():
        if held(folder):
            RunLock(folder)  # raises RunLockedError naming the live driver's pid
        if (folder / DB).exists() and not _never_started(folder):
            raise StoreError(f"run {run_id} exists in {cfg.runs_dir}: resume it with --resume "
                             f"{run_id}, or choose another run_id")
        if not (folder / DB).exists() and any(folder.iterdir()):
            raise StoreError(f"{folder} exists and is not a run: choose another run_id")
        shutil.rmtree(folder)  # an empty folder, or the debris of an older selfprog's kill
    cfg.runs_dir.mkdir(parents=True, exist_ok=True)
    for debris in cfg.runs_dir.glob(f".{run_id}.creating-*"):
        _remove_unlocked(debris)
    staging = cfg.runs_dir / f".{run_id}.creating-{os.getpid()}"
    staging.mkdir()
    lock = RunLock(staging)  # the inode moves with the rename: the lock stays held
    rel = copy_program(program, staging)
    store = Store(staging, create=True)
    try:
        store.init_run(rel, cfg.model_dump_json(), program_hash(program.root))
    finally:
        store.close()
    try:
        os.rename(staging, folder)
    except OSError as exc:  # another process made a run of this id meanwhile
        lock.release()
        shutil.rmtree(staging, ignore_errors=True)
        raise StoreError(f"run {run_id} appeared in {cfg.runs_dir} while this one was being "
                         f"created ({exc.strerror}): resume it, or choose another run_id"
                         ) from None
    return Opened(cfg, Store(folder), program, lock, new=True)


def resume_run(cfg: EvolveConfig, program: Program, folder: Path, *,
               accept_changed_program: bool = False) -> Opened:
    """Lock a run to drive it again, and check that its program is the one it started with.

    Raises:
        RunLockedError: another process drives it (the message names its pid).
        ConfigError: the program changed (any file, the evaluator and data included) and
            ``accept_changed_program`` is not set.
    """
    lock = RunLock(folder)
    store = Store(folder)
    try:
        info = store.run_info()
        now = program_hash(program.root)
        if info["program_hash"] is None:  # a run of an older selfprog: record what it runs
            store.set_run(program_hash=now)
        elif now != info["program_hash"]:
            what = (f"the program at {program.root} is not the one run {store.run_id} started "
                    f"with (hash {info['program_hash'][:12]}, now {now[:12]})")
            if not accept_changed_program:
                raise ConfigError(f"{what}: its files changed (an edited evaluator or manifest "
                                  "changes what the numbers mean) or --program names another "
                                  "one; resume with the original program, or pass "
                                  "--accept-changed-program to go on with this one (recorded "
                                  "in the run)")
            store.note("program-changed", f"{what}; accepted with --accept-changed-program")
            store.set_run(program_hash=now)
            log.warning("%s; going on, as --accept-changed-program asks (recorded)", what)
        changed = info["program_hash"] not in (None, now)
        if changed or Path(info["program"]).is_absolute() or not (folder / COPY).is_dir():
            shutil.rmtree(folder / COPY, ignore_errors=True)  # the readers' copy follows
            store.set_run(program=copy_program(program, folder))
    except BaseException:
        store.close()
        lock.release()
        raise
    return Opened(cfg, store, program, lock, new=False)


def run_evolution(config: Path | None, overrides: dict[str, Any], *, backend: Backend,
                  resume: str | None = None, summary_md: Path | None = None,
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
        summary_md: also append the markdown summary here (e.g. ``$GITHUB_STEP_SUMMARY``).
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
            slots = plan_slots(cfg.slots, program, len(os.sched_getaffinity(0)),
                               backend.host_gpus())
            runner = backend.runner(gpu=any(s.gpu_ids for s in slots))
            if opened is None:
                opened = create_run(cfg, program)
            store = opened.store
            evolution = Evolution(cfg, store, program, runner, generator, slots,
                                  sweep=backend.sweep)
            log.info("run %s: %s, %d slot(s), folder %s", store.run_id, program.name,
                     len(slots), store.folder)
            outcome = _drive(evolution, observer)
            summary = write_outputs(store, program, summary_md)
            report = write_report(store, program)
            no_proposals = _nothing_proposed(store)
        except Stopped as stop:
            raise _stopped(stop, opened, evolution, backend, summary_md) from None
        except Exception:
            if opened is not None:
                _failed(opened, summary_md)
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
             backend: Backend, summary_md: Path | None) -> Interrupted:
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
        write_outputs(store, opened.program, summary_md)
        write_report(store, opened.program)
    except Forced:
        backend.stop_run(store.run_id, settle_s=3.0)
        store.set_run(state="interrupted")
        store.note("interrupted", f"{stop.name}, then a second signal: containers removed, "
                   "summaries skipped")
    return Interrupted(f"interrupted ({stop.name}): the run's containers are removed; resume "
                       f"with: selfprog evolve --resume {store.run_id} --runs-dir "
                       f"{store.folder.parent}", exit_code=stop.exit_code)


def _failed(opened: Opened, summary_md: Path | None) -> None:
    """A run that raised: a new one with nothing recorded is removed (a failed start leaves
    no run behind); any other is marked ``failed`` (it resumes) with its summaries written."""
    store = opened.store
    if opened.new and store.seed_variant() is None:
        store.close()
        shutil.rmtree(store.folder, ignore_errors=True)
        return
    store.set_run(state="failed")
    try:
        write_outputs(store, opened.program, summary_md)
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


def _never_started(folder: Path) -> bool:
    """A store with no run row: what a kill inside the first transaction of an older selfprog
    left (this one creates a run in one rename)."""
    try:
        store = Store(folder)
    except StoreError:
        return False
    try:
        store.run_info()
        return False
    except StoreError:
        return not held(folder)
    finally:
        store.close()


def _remove_unlocked(staging: Path) -> None:
    """Remove a staging folder whose creator is gone (its lock is free)."""
    if not held(staging):
        shutil.rmtree(staging, ignore_errors=True)


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

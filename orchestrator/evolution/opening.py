"""Opening a run to drive it: created in one step, or reopened under its lock with its program
checked.

A new run is made under a hidden staging name (locked, the program copied in, the store and its
run row written) and renamed into place, so it exists whole or not at all. A resumed run is
locked first (one driver per run: ``orchestrator.runs.lock``), then its program's hash is
compared with the one it started with.
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
from typing import Any

from orchestrator.errors import ConfigError, StoreError
from orchestrator.evolution.config import EvolveConfig, load_config
from orchestrator.program import Program
from orchestrator.runs.lock import RunLock, held
from orchestrator.runs.snapshot import COPY, copy_program, program_hash
from orchestrator.runs.store import DB, Store, find_run

log = logging.getLogger(__name__)


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
    cfg = stored_config(config, overrides, resume, folder)
    return cfg, Program.load(cfg.program), folder


def stored_config(config: Path | None, overrides: dict[str, Any], resume: str | None,
                  folder: Path | None = None) -> EvolveConfig:
    """The config a run will have, without opening it for writing: a resumed run's stored one
    (plus the overrides), else the file's. The CLI reads the backend from it before the run
    opens.

    Raises:
        ConfigError: a bad config; StoreError: the run to resume does not exist.
    """
    if resume is None:
        return load_config(config, overrides)
    reader = Store(folder or find_run(resume, load_config(config, overrides).runs_dir))
    try:
        stored = json.loads(reader.run_info()["config"])
    finally:
        reader.close()
    return load_config(None, overrides, base=stored)


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

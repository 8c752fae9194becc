"""``selfprog evolve``: wire a config to the engine, the runner, a generator and the loop.

This is the one place that touches the real parts (Docker, the images, the generator backends);
the loop itself only sees their Protocols.
"""

from __future__ import annotations

import json
import os
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from orchestrator.errors import StoreError
from orchestrator.evolution.config import EvolveConfig, load_config
from orchestrator.evolution.loop import Evolution, Outcome
from orchestrator.evolution.slots import plan_slots
from orchestrator.program import Program
from orchestrator.runs.report import write_report
from orchestrator.runs.store import DB, Store
from orchestrator.runs.summary import write_outputs


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


def run_evolution(config: Path | None, overrides: dict[str, Any], *, resume: str | None = None,
                  summary_md: Path | None = None, on_start: Callable[[Evolution], None] = print,
                  on_tick: Callable[[Evolution], None] | None = None,
                  log: Callable[[str], None] = print) -> Finished:
    """Run (or resume) an evolution to its budget; write the summary, best.diff and report.

    Raises:
        ConfigError: a bad config, program or slot plan (exit code 2).
        EngineError: the engine or the images failed (exit code 3).
        StoreError: the run to resume does not exist (exit code 1).
    """
    from orchestrator.containers import engine
    from orchestrator.containers.docker_runner import DockerRunner
    from orchestrator.containers.images import ensure_runtime
    from orchestrator.containers.sweep import sweep
    from orchestrator.generators import make_generator

    cfg, store, program = open_run(config, overrides, resume)
    slots = plan_slots(cfg.slots, program, len(os.sched_getaffinity(0)), engine.host_gpus())
    client = engine.ensure_engine(log=log)
    flavour = "gpu" if any(s.gpu_ids for s in slots) else "cpu"
    runner = DockerRunner(client, runtime={flavour: ensure_runtime(client, flavour, log=log)})
    generator = make_generator(cfg.generator, say=log)
    evolution = Evolution(cfg, store, program, runner, generator, slots,
                          sweep=lambda run_id: sweep(client, run_id))
    on_start(evolution)
    try:
        outcome = evolution.run(on_tick)
        summary = write_outputs(store, program, summary_md)
        report = write_report(store, program)
    except KeyboardInterrupt:  # stop this run's containers now; pending work waits for --resume
        sweep(client, store.run_id)
        store.set_run(state="interrupted")
        raise
    finally:
        store.close()
    return Finished(outcome, store.folder, report, summary)

"""Parallel sandbox slots: N workers that share the CPUs, own GPU ids, and run queued jobs.

The loop puts jobs into one queue (re-evaluations first) and keeps it a few jobs ahead of the
free slots, so a slot that finishes takes its next job at once instead of waiting for the
generator. Each slot counts the seconds it spends inside ``Runner.run``; that over the wall time
is the slot utilisation the docs report.
"""

from __future__ import annotations

import itertools
import math
import queue
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from orchestrator.errors import ConfigError, SelfprogError
from orchestrator.evolution.config import SlotsConfig
from orchestrator.program import Program
from orchestrator.result import Status, VariantResult
from orchestrator.runner import Runner, RunRequest, Variant


@dataclass(frozen=True)
class Slot:
    index: int
    gpu_ids: tuple[int, ...] = ()
    cpus: float | None = None
    """The slot's CPU share; None leaves the program's own ``cpus``."""


def plan_slots(cfg: SlotsConfig, program: Program, host_cpus: int, host_gpus: int) -> list[Slot]:
    """Divide the host among slots: on a GPU host one per group of ``gpus_per_slot`` GPUs
    (default: the program's ``gpus``, at least 1), else by CPU cores at the program's ``cpus``.

    Raises:
        ConfigError: the slots need more GPUs than the host has.
    """
    res = program.manifest.resources
    per = cfg.gpus_per_slot if cfg.gpus_per_slot is not None else max(1, res.gpus)
    if host_gpus > 0 or res.gpus > 0:
        count = cfg.count or max(1, host_gpus // per)
        if per * count > host_gpus:
            raise ConfigError(f"{count} slot(s) × {per} GPU(s) needs {per * count} GPUs; this "
                              f"host has {host_gpus} (program {program.name}, slots.count, "
                              "slots.gpus_per_slot)")
        gpu_sets = [tuple(range(i * per, (i + 1) * per)) for i in range(count)]
    else:
        count = cfg.count or max(1, math.floor(host_cpus / res.cpus))
        gpu_sets = [()] * count
    share = min(res.cpus, host_cpus / count)
    return [Slot(i, gpus, share) for i, gpus in enumerate(gpu_sets)]


@dataclass(frozen=True)
class Job:
    eval_id: int
    variant: Variant
    folder: Path
    seed: int
    priority: int = 1
    """0 runs before 1: re-evaluations go first so a crowning is not held up."""


@dataclass
class Done:
    job: Job
    slot: int
    result: VariantResult | None = None
    """None when the job was not started (the time budget ran out)."""
    error: BaseException | None = None
    """An error that must stop the run (a config error, or a bug in the runner)."""
    seconds: float = 0.0


@dataclass
class SlotPool:
    slots: list[Slot]
    runner: Runner
    run_id: str
    gate: Callable[[], bool] = lambda: True
    """Asked before a job starts; False skips it (returned undone)."""
    busy_s: list[float] = field(default_factory=list)
    current: dict[int, tuple[Job, float]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self._jobs: queue.PriorityQueue = queue.PriorityQueue()
        self._done: queue.Queue[Done] = queue.Queue()
        self._order = itertools.count()
        self._closed = False
        self.busy_s = [0.0] * len(self.slots)
        self.started = time.monotonic()
        self._threads = [threading.Thread(target=self._work, args=(s,), daemon=True,
                                          name=f"slot-{s.index}") for s in self.slots]
        for thread in self._threads:
            thread.start()

    def submit(self, job: Job) -> None:
        self._jobs.put((job.priority, next(self._order), job))

    @property
    def waiting(self) -> int:
        return self._jobs.qsize()

    @property
    def running(self) -> int:
        return len(self.current)

    def results(self, timeout: float) -> list[Done]:
        """Finished jobs: waits up to ``timeout`` for the first, then takes what else is ready."""
        try:
            out = [self._done.get(timeout=timeout)]
        except queue.Empty:
            return []
        while True:
            try:
                out.append(self._done.get_nowait())
            except queue.Empty:
                return out

    def utilisation(self) -> float:
        wall = time.monotonic() - self.started
        live = sum(time.monotonic() - t0 for _job, t0 in list(self.current.values()))
        return (sum(self.busy_s) + live) / (wall * len(self.slots)) if wall > 0 else 0.0

    def close(self) -> None:
        """Stop the workers once their current job ends (queued jobs are dropped, and a job a
        worker took but has not started is not started)."""
        self._closed = True
        while True:
            try:
                self._jobs.get_nowait()
            except queue.Empty:
                break
        for _ in self._threads:
            self._jobs.put((math.inf, next(self._order), None))

    def join(self, timeout: float) -> bool:
        """Wait up to ``timeout`` s in all for the workers to end (after :meth:`close`).

        Returns:
            True when every worker has ended.
        """
        deadline = time.monotonic() + timeout
        for thread in self._threads:
            thread.join(max(0.0, deadline - time.monotonic()))
        return not any(t.is_alive() for t in self._threads)

    def _work(self, slot: Slot) -> None:
        while True:
            _prio, _n, job = self._jobs.get()
            if job is None or self._closed:
                return
            if not self.gate():
                self._done.put(Done(job, slot.index))
                continue
            t0 = time.monotonic()
            self.current[slot.index] = (job, t0)
            done = self._run(job, slot)
            done.seconds = time.monotonic() - t0
            self.busy_s[slot.index] += done.seconds
            del self.current[slot.index]
            self._done.put(done)

    def _run(self, job: Job, slot: Slot) -> Done:
        request = RunRequest(variant=job.variant, run_id=self.run_id, folder=job.folder,
                             seed=job.seed, gpu_ids=slot.gpu_ids, cpus=slot.cpus)
        try:
            return Done(job, slot.index, result=self.runner.run(request))
        except ConfigError as exc:
            return Done(job, slot.index, error=exc)
        except SelfprogError as exc:  # the engine's fault, not the variant's: retried
            result = VariantResult(variant_id=job.variant.id, status=Status.INFRA_ERROR,
                                   folder=str(job.folder), seed=job.seed, error=str(exc))
            return Done(job, slot.index, result=result)
        except Exception as exc:  # a bug in a runner: hand it to the loop, which stops the run
            return Done(job, slot.index, error=exc)

"""The runner interface: run one variant through both stages and return its result record.

The loop depends only on this Protocol; ``containers.docker_runner.DockerRunner`` is the real
implementation, and tests of the loop use small fakes.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from orchestrator.program import Program, variant_hash
from orchestrator.result import VariantResult


@dataclass(frozen=True)
class Variant:
    """A program with some of its editable files replaced."""

    program: Program
    files: dict[str, str] = field(hash=False)
    """The full text of every editable file (the seed's own text for files left unchanged)."""

    @property
    def id(self) -> str:
        """Identity: the first 16 hex digits of the content hash of the editable files."""
        return variant_hash(self.files)[:16]


@dataclass(frozen=True)
class RunRequest:
    variant: Variant
    run_id: str
    """Labels every container, so a later start-up can sweep what a dead orchestrator left."""
    folder: Path
    """The variant's own folder: logs, protocol events and artifacts go there, nowhere else."""
    seed: int = 0
    gpu_ids: tuple[int, ...] = ()
    """GPU ids owned by the slot that runs this request; the program's ``gpus`` of them are used."""
    cpus: float | None = None
    """CPU share of the slot, overriding ``program.resources.cpus`` when smaller."""


class Runner(Protocol):
    def run(self, request: RunRequest) -> VariantResult:
        """Run TRAIN then EVAL. Never raises for what the variant did: that is a status.

        Raises:
            GpuUnavailableError: the program needs GPUs and the host has no GPU runtime
                (before any container starts).
        """
        ...


class Backend(Protocol):
    """Where variants run: the local Docker engine today, a cluster later.

    The evolve launcher asks it for the host's GPUs (to plan slots), a runner for the flavour
    the slots need, and to sweep what a run (or a dead orchestrator) left behind. A backend that
    knows its own slots (a cluster: one per node agent) also has
    ``plan_slots(cfg.slots, program) -> list[Slot]``, which the launcher then uses instead.
    """

    def host_gpus(self) -> int:
        """NVIDIA GPUs the backend can hand to slots (0 on a CPU-only host)."""
        ...

    def runner(self, gpu: bool) -> Runner:
        """A runner whose runtime image is ready (built if missing), CUDA-capable if ``gpu``.

        Raises:
            EngineError: the engine or the image build failed.
        """
        ...

    def sweep(self, run_id: str | None = None) -> list[str]:
        """Remove leftovers of dead orchestrators, and everything of ``run_id`` when given;
        return what was removed.

        Raises:
            EngineError: the engine could not list or remove them.
        """
        ...

    def stop_run(self, run_id: str, *, settle_s: float = 10.0) -> list[str]:
        """Stop a run for good: refuse any later container or volume of this process, wait for
        the creations in flight, then remove everything of ``run_id``; return what was removed.

        Raises:
            EngineError: the engine could not list or remove them.
        """
        ...

    def close(self) -> None:
        """Release the connection to the engine."""
        ...


def cpu_cap(budget_s: float, cpus: float) -> float:
    """CPU-seconds a CPU TRAIN stage may use: its budget on every core it has, half again for
    start-up and export, plus 10 s. A variant that drops the budget check gains nothing past it."""
    return budget_s * cpus * 1.5 + 10.0

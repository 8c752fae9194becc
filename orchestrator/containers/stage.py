"""Running one stage (one hardened container) from creation to removal.

The container's lifecycle is ``container.hardened``'s, as for every container selfprog runs.
The deadline is the orchestrator's: a watchdog thread sends SIGTERM at the wall-clock limit (the
harness forwards it to the program) and SIGKILL after the grace period, whatever the program does.
The protocol stream is read as it comes and validated on the host (``telemetry.StageStream``).
For TRAIN, the harness lingers after ``exit`` so ``/out`` (a tmpfs volume that lives only while a
container mounts it) can be copied out of the live container; the watchdog is stopped once
``exit`` is read, so a stage that finished in time is never killed during the copy. The container
is removed whatever happens; an engine failure is raised as ``InfraError`` (retried, never blamed on
the variant), except while copying ``/out`` out of a container that stopped: that is the variant's.
"""

from __future__ import annotations

import signal
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any, Literal

import docker

from orchestrator.containers.artifacts import extract
from orchestrator.containers.container import (
    ENGINE_ERRORS,
    ContainerSpec,
    Defer,
    hardened,
    short,
)
from orchestrator.containers.telemetry import StageStream, open_log
from orchestrator.containers.watchdog import Watchdog
from orchestrator.result import StageResult, Status

Stage = Literal["train", "eval"]


@dataclass
class StageSpec:
    stage: Stage
    image: str
    script: str
    name: str
    labels: dict[str, str]
    create: dict[str, Any]
    """Hardened keyword arguments for ``containers.create`` (see ``containers.hardening``)."""
    timeout_s: float
    grace_s: float
    variant_id: str
    cpu_limit_s: float | None = None
    """CPU-seconds (all processes together) after which the stage is stopped like a timeout:
    the training budget's trusted side, since the code that honours the budget is the variant's."""
    copy_out: Path | None = None
    """TRAIN: the folder that receives the capped copy of ``/out``."""
    copy_cap: int = 0


@dataclass
class StageOutcome:
    result: StageResult
    stream: StageStream
    problems: list[str] = field(default_factory=list)


def run_stage(client: docker.DockerClient, spec: StageSpec, log_path: Path,
              events: IO[str], defer: Defer | None = None) -> StageOutcome:
    """Create, start, watch, read and remove one stage's container.

    Args:
        client: a client for the engine.
        spec: the stage.
        log_path: the stage's log (the harness's output and the variant's, capped).
        events: where the protocol's messages go, one JSON line each.
        defer: when given, the container's removal is handed to it (to overlap with the next
            stage) instead of done here; whoever passes it must run what it was given.

    Raises:
        InfraError: the engine failed (create, start, stream, inspect, remove); carries the
            variant id and the stage log's path.
        ConfigError: the container's name belongs to a live orchestrator.
    """
    problems: list[str] = []
    with open_log(log_path) as log:
        stream = StageStream(spec.stage, log, events)
        with hardened(client.api, _container(spec, log_path), defer) as box:
            started = time.monotonic()
            box.start()
            if not box.read(stream.feed):
                stream.close()
            duration = time.monotonic() - started
            if stream.exit is not None:  # done: the copy below is bounded by its cap, not timed
                box.stop_watch(wait=True)
            if spec.copy_out is not None and stream.exit is not None and not box.watchdog.fired:
                problems = _copy_out(client.api, box.id, spec)
            box.stop_watch()
            state = {} if stream.exit is not None and stream.exit.code == 0 else box.state()
    result = classify(spec, stream, state, box.watchdog, duration)
    result.log_path = str(log_path)
    return StageOutcome(result, stream, problems)


def _container(spec: StageSpec, log_path: Path) -> ContainerSpec:
    return ContainerSpec(
        what=f"the {spec.stage} stage", image=spec.image, name=spec.name, labels=spec.labels,
        create=spec.create, command=[spec.stage, spec.script], timeout_s=spec.timeout_s,
        grace_s=spec.grace_s, cpu_limit_s=spec.cpu_limit_s, variant_id=spec.variant_id,
        log=log_path)


def _copy_out(api: Any, container: str, spec: StageSpec) -> list[str]:
    """The copy's problems; an engine failure is ``InfraError`` only while the container runs.

    A container that stopped during the copy (its own code killed the lingering harness) is the
    variant's problem, and so is anything else that goes wrong reading what the variant wrote.
    """
    if spec.copy_out is None:  # an EVAL stage: its /out is the artifacts, read-only
        return []
    try:
        chunks, _stat = api.get_archive(container, "/out")
        return extract(chunks, spec.copy_out, spec.copy_cap).problems
    except ENGINE_ERRORS as exc:
        if api.inspect_container(container)["State"].get("Running"):
            raise
        return [f"artifacts not copied: the container stopped during the copy ({short(exc)})"]
    except Exception as exc:  # recorded on the variant: never an escape from the loop
        return [f"artifacts not copied: {type(exc).__name__}: {short(exc)}"]


def classify(spec: StageSpec, stream: StageStream, state: dict[str, Any], watchdog: Watchdog,
             duration: float) -> StageResult:
    """The stage's status from what the harness said and what the engine and cgroup saw."""
    exit = stream.exit
    code = exit.code if exit is not None else state.get("ExitCode")
    oom = bool(state.get("OOMKilled")) or bool(exit is not None and exit.oom_kills)
    status, error = Status.OK, None
    if watchdog.cpu_exceeded is not None:
        status, error = Status.TIMEOUT, (
            f"used {watchdog.cpu_exceeded:.0f} CPU-seconds, past its cap of "
            f"{spec.cpu_limit_s:g} (the training budget's), and was killed")
    elif watchdog.fired:
        status, error = Status.TIMEOUT, f"ran past its {spec.timeout_s:g} s deadline and was killed"
    elif oom and code != 0:
        status, error = Status.OOM, "hit its memory limit and was killed"
    elif stream.over_cap:
        status, error = Status.INVALID, "flooded its output past the cap"
    elif exit is None:
        status, error = Status.CRASH, f"ended without the harness's exit message (code {code})"
    elif exit.code != 0:
        status, error = Status.CRASH, _describe_code(exit.code)
    return StageResult(
        stage=spec.stage, status=status, exit_code=code, duration_s=round(duration, 4),
        peak_memory_bytes=_peak(exit.peak_memory_bytes if exit is not None else None,
                                watchdog.peak_memory),
        messages=stream.messages, violations=list(stream.violations), error=error)


def _peak(reported: int | None, seen: int | None) -> int | None:
    """The larger of the harness's figure and the host's: a variant can only over-report."""
    known = [v for v in (reported, seen) if v is not None]
    return max(known) if known else None


def _describe_code(code: int) -> str:
    if code < 0:
        try:
            return f"killed by {signal.Signals(-code).name}"
        except ValueError:
            return f"killed by signal {-code}"
    return f"exited with code {code}"



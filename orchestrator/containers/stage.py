"""Running one stage (one hardened container) from creation to removal.

The deadline is the orchestrator's: a watchdog thread sends SIGTERM at the wall-clock limit (the
harness forwards it to the program) and SIGKILL after the grace period, whatever the program does.
The protocol stream is read as it comes and validated on the host (``telemetry.StageStream``).
For TRAIN, the harness lingers after ``exit`` so ``/out`` (a tmpfs volume that lives only while a
container mounts it) can be copied out of the live container; the watchdog is stopped once
``exit`` is read, so a stage that finished in time is never killed during the copy. The container
is removed in ``finally``; an engine failure is raised as ``InfraError`` (retried, never blamed on
the variant), except while copying ``/out`` out of a container that stopped: that is the variant's.
"""

from __future__ import annotations

import signal
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import docker
from docker.errors import APIError, DockerException, NotFound
from requests.exceptions import RequestException

from orchestrator.containers import cgroup
from orchestrator.containers.artifacts import extract
from orchestrator.containers.hardening import LABEL_OWNER
from orchestrator.containers.sweep import claimable
from orchestrator.containers.telemetry import StageStream, open_log
from orchestrator.errors import ConfigError, InfraError
from orchestrator.result import StageResult, Status

_ENGINE_ERRORS = (DockerException, RequestException)


@dataclass
class StageSpec:
    stage: str
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


class Watchdog:
    """SIGTERM at the deadline, SIGKILL ``grace_s`` later, from a thread of its own.

    Each second it also reads the container's cgroup from the host: its CPU time, stopped the
    same way past ``cpu_limit_s``, and its peak memory (a figure the variant cannot forge).
    """

    def __init__(self, api: Any, container: str, timeout_s: float, grace_s: float,
                 cpu_limit_s: float | None = None):
        self.api, self.container = api, container
        self.grace_s, self.cpu_limit_s = grace_s, cpu_limit_s
        self.fired = False
        self.cpu_exceeded: float | None = None
        """CPU-seconds seen when the CPU cap stopped the stage."""
        self.peak_memory: int | None = None
        self.error: Exception | None = None
        """An engine failure while killing, raised by the stage as an ``InfraError``."""
        self._stop = threading.Event()
        self.timers = [threading.Timer(timeout_s, self._term),
                       threading.Timer(timeout_s + grace_s + 1.0, self._kill)]
        self._poller = threading.Thread(target=self._poll, daemon=True)
        for timer in self.timers:
            timer.daemon = True

    def start(self) -> None:
        for timer in self.timers:
            timer.start()
        self._poller.start()

    def cancel(self, wait: bool = False) -> None:
        """Stop the timers and the poller; ``wait``: until none can still send a signal."""
        self._stop.set()
        for timer in self.timers:
            timer.cancel()
        if wait:
            for thread in (*self.timers, self._poller):
                if thread.is_alive():
                    thread.join(timeout=10.0)

    def _poll(self) -> None:
        while not self._stop.wait(1.0):
            peak = cgroup.peak_memory_bytes(self.container)
            if peak is not None:
                self.peak_memory = max(peak, self.peak_memory or 0)
            used = cgroup.cpu_seconds(self.container) if self.cpu_limit_s else None
            if used is not None and used > self.cpu_limit_s and not self.fired:
                self.cpu_exceeded = used
                self._term()
                if not self._stop.wait(self.grace_s + 1.0):
                    self._kill()
                return

    def _term(self) -> None:
        self.fired = True
        self._signal(signal.SIGTERM)

    def _kill(self) -> None:
        self._signal(signal.SIGKILL)

    def _signal(self, sig: int) -> None:
        try:
            self.api.kill(self.container, signal=int(sig))
        except APIError as exc:
            if exc.status_code not in (404, 409):  # gone or no longer running: nothing to kill
                self.error = exc
        except RequestException as exc:
            self.error = exc


def run_stage(client: docker.DockerClient, spec: StageSpec, log_path: Path,
              events: IO[str], defer: Callable[[Callable[[], None]], None] | None = None,
              ) -> StageOutcome:
    """Create, start, watch, read and remove one stage's container.

    Args:
        defer: when given, the container's removal is handed to it (to overlap with the next
            stage) instead of done here; whoever passes it must run what it was given.

    Raises:
        InfraError: the engine failed (create, start, stream, inspect, remove); carries the
            variant id and the stage log's path.
    """
    container = watchdog = None
    problems: list[str] = []
    with open_log(log_path) as log:
        stream = StageStream(spec.stage, log, events)
        try:
            container = _create(client.api, spec)
            watchdog = Watchdog(client.api, container, spec.timeout_s, spec.grace_s,
                                spec.cpu_limit_s)
            started = time.monotonic()
            client.api.start(container)
            watchdog.start()
            _read(client.api, container, stream)
            duration = time.monotonic() - started
            if stream.exit is not None:  # done: the copy below is bounded by its cap, not timed
                watchdog.cancel(wait=True)
            if spec.copy_out is not None and stream.exit is not None and not watchdog.fired:
                problems = _copy_out(client.api, container, spec)
            watchdog.cancel()
            if watchdog.error is not None:
                raise watchdog.error
            state = {} if stream.exit is not None and stream.exit.code == 0 else (
                client.api.inspect_container(container)["State"])  # OOMKilled, the exit code
        except _ENGINE_ERRORS as exc:
            raise InfraError(f"engine failed in the {spec.stage} stage: {_short(exc)}",
                             variant_id=spec.variant_id, log=log_path) from None
        finally:
            if watchdog is not None:
                watchdog.cancel()
            if container is not None and defer is not None:
                defer(lambda: _remove(client.api, container, spec, log_path))
            elif container is not None:
                _remove(client.api, container, spec, log_path)
    result = classify(spec, stream, state, watchdog, duration)
    result.log_path = str(log_path)
    return StageOutcome(result, stream, problems)


def _create(api: Any, spec: StageSpec) -> str:
    """Create the container with the low-level API (the high-level one inspects it again)."""
    kwargs = {k: v for k, v in spec.create.items() if k != "host_config"}
    kwargs.update(command=[spec.stage, spec.script], name=spec.name, labels=spec.labels,
                  host_config=api.create_host_config(**spec.create["host_config"]))
    try:
        return api.create_container(spec.image, **kwargs)["Id"]
    except APIError as exc:
        if exc.status_code != 409:
            raise
    # A container of this deterministic name exists. Left by an earlier attempt of ours or by a
    # dead orchestrator, it is removed; a live orchestrator's is never touched.
    labels = api.inspect_container(spec.name)["Config"].get("Labels") or {}
    if not claimable(labels):
        raise ConfigError(
            f"container {spec.name} belongs to a live orchestrator ({labels.get(LABEL_OWNER)}): "
            "two runs share this run id; give this one another", variant_id=spec.variant_id)
    api.remove_container(spec.name, force=True)
    return api.create_container(spec.image, **kwargs)["Id"]


def _read(api: Any, container: str, stream: StageStream) -> None:
    logs = api.logs(container, stdout=True, stderr=False, stream=True, follow=True)
    try:
        for chunk in logs:
            if stream.feed(chunk):
                return
        stream.close()
    finally:
        logs.close()


def _copy_out(api: Any, container: str, spec: StageSpec) -> list[str]:
    """The copy's problems; an engine failure is ``InfraError`` only while the container runs.

    A container that stopped during the copy (its own code killed the lingering harness) is the
    variant's problem, and so is anything else that goes wrong reading what the variant wrote.
    """
    try:
        chunks, _stat = api.get_archive(container, "/out")
        return extract(chunks, spec.copy_out, spec.copy_cap).problems
    except _ENGINE_ERRORS as exc:
        if api.inspect_container(container)["State"].get("Running"):
            raise
        return [f"artifacts not copied: the container stopped during the copy ({_short(exc)})"]
    except Exception as exc:  # recorded on the variant: never an escape from the loop
        return [f"artifacts not copied: {type(exc).__name__}: {_short(exc)}"]


def _remove(api: Any, container: str, spec: StageSpec, log_path: Path) -> None:
    for attempt in range(3):
        try:
            api.remove_container(container, force=True, v=True)
            return
        except NotFound:
            return
        except _ENGINE_ERRORS as exc:
            if attempt == 2:
                raise InfraError(f"cannot remove container {spec.name}: {_short(exc)}",
                                 variant_id=spec.variant_id, log=log_path) from None
            time.sleep(0.5)


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
    elif code != 0:
        status, error = Status.CRASH, _describe_code(code)
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


def _short(exc: Exception) -> str:
    return (str(exc).splitlines() or [type(exc).__name__])[0][:300]

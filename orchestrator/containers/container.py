"""One hardened container from creation to removal: the lifecycle the stage and the sampler share.

    with hardened(client.api, spec) as box:   # created; a name clash is claimed or refused
        box.start()                           # the watchdog's deadline runs from here
        box.read(feed)                        # stdout, chunk by chunk, as it comes
        state = box.state()
    # removed here, or handed to ``defer``, whatever happened inside

Anything the engine raises inside the block leaves it as an ``InfraError`` carrying the variant id
and the log path: the engine's fault, retried, never blamed on the variant. Errors of the caller's
own (a variant's flood, a sampling failure) pass through unchanged.
"""

from __future__ import annotations

import functools
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from docker.errors import APIError, DockerException
from requests.exceptions import RequestException

from orchestrator.containers.gate import CREATION
from orchestrator.containers.hardening import LABEL_OWNER
from orchestrator.containers.sweep import claimable, gone
from orchestrator.containers.watchdog import Watchdog
from orchestrator.errors import ConfigError, InfraError

ENGINE_ERRORS = (DockerException, RequestException)
"""What the engine (or the connection to it) raises: never the variant's doing."""
Defer = Callable[[Callable[[], None]], None]
"""Takes a removal to run later (to overlap it with other work); whoever passes it runs it."""


@dataclass(frozen=True)
class ContainerSpec:
    what: str
    """What the container is, for messages: "the train stage", "the sampling container"."""
    image: str
    """The image to run: a variant's thin image, or the runtime image."""
    name: str
    """Its name; one already taken is reclaimed if ours or a dead orchestrator's, else refused."""
    labels: dict[str, str]
    """``hardening.labels``: whose container it is, so a sweep can find it."""
    create: dict[str, Any]
    """Hardened keyword arguments for ``create_container`` (``hardening.create_kwargs``)."""
    command: list[str]
    """Arguments to the entrypoint."""
    timeout_s: float
    """Wall-clock seconds from start to SIGTERM."""
    grace_s: float
    """Seconds from SIGTERM to SIGKILL."""
    entrypoint: list[str] | None = None
    """Replaces the image's entrypoint when given."""
    cpu_limit_s: float | None = None
    """CPU-seconds after which it is stopped as at the deadline (None: no cap)."""
    variant_id: str | None = None
    """Carried by every error, with ``log``."""
    log: Path | None = None
    """The log of whatever runs in it (a stage's), named by every error."""


class Container:
    """A created container and its (not yet started) watchdog; made by :func:`hardened`."""

    def __init__(self, api: Any, spec: ContainerSpec, container_id: str):
        self.api, self.spec, self.id = api, spec, container_id
        self.watchdog = Watchdog(api, container_id, spec.timeout_s, spec.grace_s,
                                 spec.cpu_limit_s)

    def start(self) -> None:
        """Start the container, then its deadline."""
        self.api.start(self.id)
        self.watchdog.start()

    def read(self, feed: Callable[[bytes], bool]) -> bool:
        """Pass stdout to ``feed`` as it comes until ``feed`` returns True or the output ends.

        Returns:
            True when ``feed`` stopped the reading, False when the container's output ended.
        """
        chunks = self.api.logs(self.id, stdout=True, stderr=False, stream=True, follow=True)
        try:
            return any(feed(chunk) for chunk in chunks)
        finally:
            chunks.close()

    def stop_watch(self, wait: bool = False) -> None:
        """Stop the watchdog and raise the engine failure it met while signalling, if any.

        Args:
            wait: until no timer can still send a signal (the container finished in time, so
                nothing may kill it now, e.g. while its files are copied out).
        """
        self.watchdog.cancel(wait=wait)
        if self.watchdog.error is not None:
            raise self.watchdog.error

    def state(self) -> dict[str, Any]:
        """The engine's ``State`` now (``Running``, ``ExitCode``, ``OOMKilled`` ...)."""
        state: dict[str, Any] = self.api.inspect_container(self.id)["State"]
        return state

    def exit_state(self) -> dict[str, Any]:
        """The ``State`` once the container has stopped; call it after its output ended (the
        watchdog's SIGKILL bounds the wait)."""
        self.api.wait(self.id, timeout=self.spec.timeout_s + self.spec.grace_s + 30)
        return self.state()

    def stderr_tail(self, lines: int = 20) -> str:
        """The last ``lines`` lines of its stderr (capped by the engine's log limit)."""
        tail: bytes = self.api.logs(self.id, stdout=False, stderr=True, tail=lines)
        return tail.decode(errors="replace")


@contextmanager
def hardened(api: Any, spec: ContainerSpec, defer: Defer | None = None) -> Iterator[Container]:
    """Create the container; remove it (or hand its removal to ``defer``) when the block ends.

    Args:
        api: the engine's low-level client (``client.api``).
        spec: what to create.
        defer: when given, the removal is handed to it instead of done here.

    Raises:
        InfraError: the engine failed inside the block or while removing the container.
        ConfigError: the name belongs to a live orchestrator (two runs share a run id).
    """
    box: Container | None = None
    try:
        box = Container(api, spec, create(api, spec))
        yield box
    except ENGINE_ERRORS as exc:
        raise InfraError(f"engine failed in {spec.what}: {short(exc)}",
                         variant_id=spec.variant_id, log=spec.log) from None
    finally:
        if box is not None:
            box.watchdog.cancel()
            removal = functools.partial(remove, api, box.id, spec)
            if defer is not None:
                defer(removal)
            else:
                removal()


def create(api: Any, spec: ContainerSpec) -> str:
    """Create the container with the low-level API (the high-level one inspects it again).

    Raises:
        ConfigError: a container of this name belongs to a live orchestrator.
        docker.errors.APIError: the engine refused.
    """
    with CREATION.creating(spec.what, spec.variant_id):  # refused once the run is stopping
        return _create(api, spec)


def _create(api: Any, spec: ContainerSpec) -> str:
    kwargs = {k: v for k, v in spec.create.items() if k != "host_config"}
    kwargs.update(command=spec.command, entrypoint=spec.entrypoint, name=spec.name,
                  labels=spec.labels,
                  host_config=api.create_host_config(**spec.create["host_config"]))
    try:
        return str(api.create_container(spec.image, **kwargs)["Id"])
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
    return str(api.create_container(spec.image, **kwargs)["Id"])


def remove(api: Any, container_id: str, spec: ContainerSpec) -> None:
    """Remove the container and its anonymous volumes; one already gone (or going) is done.

    Raises:
        InfraError: the engine failed three times.
    """
    for attempt in range(3):
        try:
            api.remove_container(container_id, force=True, v=True)
            return
        except ENGINE_ERRORS as exc:
            if gone(exc):
                return
            if attempt == 2:
                raise InfraError(f"cannot remove container {spec.name}: {short(exc)}",
                                 variant_id=spec.variant_id, log=spec.log) from None
            time.sleep(0.5)


def short(exc: BaseException) -> str:
    """The first line of an error, at most 300 characters."""
    return (str(exc).splitlines() or [type(exc).__name__])[0][:300]

"""``LocalBackend``: variants run on the local Docker engine (``orchestrator.runner.Backend``).

It connects to an engine that already answers and never installs or starts one: that is
``selfprog engine`` (``make engine``), a step of its own. One connection serves every runner it
hands out, the sweeps and the image removals of ``selfprog gc``.

    backend = LocalBackend.connect()
    try:
        backend.sweep()                       # what dead orchestrators left
        runner = backend.runner(gpu=backend.host_gpus() > 0)
        result = runner.run(request)
    finally:
        backend.close()
"""

from __future__ import annotations

import threading

import docker
from docker.errors import APIError, ImageNotFound

from orchestrator.containers import engine, sweep
from orchestrator.containers.docker_runner import DockerRunner
from orchestrator.containers.gate import CREATION
from orchestrator.containers.images import Flavour, ensure_runtime
from orchestrator.containers.sweep import VOLUME_SETTLE_S
from orchestrator.errors import EngineError


class LocalBackend:
    """The local engine as a :class:`orchestrator.runner.Backend`.

    Args:
        client: a connected client; :meth:`connect` makes one.
    """

    def __init__(self, client: docker.DockerClient):
        self.client = client
        self._runners: dict[Flavour, DockerRunner] = {}
        self._lock = threading.Lock()

    @classmethod
    def connect(cls, timeout: float = 30) -> LocalBackend:
        """Connect to the engine in the environment (DOCKER_HOST or the local socket).

        Args:
            timeout: seconds each engine call may take.

        Raises:
            EngineError: no engine answers; the message says to run ``selfprog engine`` or
                ``make engine``.
        """
        return cls(engine.connect(timeout))

    def host_gpus(self) -> int:
        """NVIDIA GPUs on this host (0 where ``nvidia-smi`` is absent or fails)."""
        return engine.host_gpus()

    def runner(self, gpu: bool) -> DockerRunner:
        """A runner whose runtime image (CUDA-capable if ``gpu``) is built; one per flavour.

        Raises:
            EngineError: the engine failed; ``ImageError`` when the image build did.
        """
        flavour: Flavour = "gpu" if gpu else "cpu"
        with self._lock:  # two slots asking at once build the image once
            if flavour not in self._runners:
                tag = ensure_runtime(self.client, flavour)
                self._runners[flavour] = DockerRunner(self.client, runtime={flavour: tag})
            return self._runners[flavour]

    def sweep(self, run_id: str | None = None) -> list[str]:
        """Remove what dead orchestrators left, and everything of ``run_id`` when given.

        Returns:
            The names of the containers and volumes removed.

        Raises:
            EngineError: the engine could not list or remove them.
        """
        return sweep.sweep(self.client, run_id)

    def stop_run(self, run_id: str, *, settle_s: float = VOLUME_SETTLE_S) -> list[str]:
        """Stop a run for good: refuse every later container or volume of this process, wait for
        the creations in flight, then remove everything labelled with ``run_id``.

        After it, nothing of the run exists and nothing of it can appear (a slot thread that
        was about to start a container is refused). :meth:`close` opens the door again.

        Returns:
            The names of the containers and volumes removed.

        Raises:
            EngineError: the engine could not list or remove them.
        """
        CREATION.close()
        return sweep.sweep(self.client, run_id, only_run=True, settle_s=settle_s)

    def remove_image(self, tag: str) -> bool:
        """Remove an image (``selfprog gc``); one that is gone or still in use is left.

        Returns:
            True when removed; False when no such image exists or a container uses it (one of
            another run, perhaps still running).

        Raises:
            EngineError: the engine refused for another reason.
        """
        try:
            self.client.images.remove(tag, noprune=False)
        except ImageNotFound:
            return False
        except APIError as exc:
            if exc.status_code == 409:  # in use by a container: not ours to take away
                return False
            raise EngineError(f"cannot remove image {tag}: {exc}") from None
        return True

    def close(self) -> None:
        """Release the connection to the engine (and let a later backend of this process create
        containers again after a :meth:`stop_run`)."""
        self.client.close()
        CREATION.reopen()

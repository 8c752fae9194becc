"""The host's deadline on one container: SIGTERM at the wall-clock limit, SIGKILL after a grace.

It runs in threads of its own, so it holds whatever the container does with its output (nothing,
a flood, a stream left open by a stray child). Each second it also reads the container's cgroup
from the host: its CPU time, stopped the same way past an optional CPU-seconds cap, and its peak
memory (a figure the variant cannot forge, unlike what its harness reports).
"""

from __future__ import annotations

import signal
import threading
from typing import Any

from docker.errors import APIError
from requests.exceptions import RequestException

from orchestrator.containers import cgroup


class Watchdog:
    """SIGTERM at the deadline, SIGKILL ``grace_s`` later, from a thread of its own.

    Args:
        api: the engine's low-level client (``docker.APIClient``).
        container: the container's full id (cgroup paths are named by it).
        timeout_s: seconds from :meth:`start` to SIGTERM.
        grace_s: seconds from SIGTERM to SIGKILL (plus one, for the engine to deliver SIGTERM).
        cpu_limit_s: CPU-seconds (all processes together) past which the container is stopped
            as at the deadline; None for no cap.
    """

    def __init__(self, api: Any, container: str, timeout_s: float, grace_s: float,
                 cpu_limit_s: float | None = None):
        self.api, self.container = api, container
        self.grace_s, self.cpu_limit_s = grace_s, cpu_limit_s
        self.fired = False
        """Whether SIGTERM was sent (deadline or CPU cap)."""
        self.cpu_exceeded: float | None = None
        """CPU-seconds seen when the CPU cap stopped the container."""
        self.peak_memory: int | None = None
        """Highest memory use the host saw, in bytes (None where cgroups are not visible)."""
        self.error: Exception | None = None
        """An engine failure while signalling; the caller raises it (as an ``InfraError``)."""
        self._stop = threading.Event()
        self.timers = [threading.Timer(timeout_s, self._term),
                       threading.Timer(timeout_s + grace_s + 1.0, self._kill)]
        self._poller = threading.Thread(target=self._poll, daemon=True)
        for timer in self.timers:
            timer.daemon = True

    def start(self) -> None:
        """Start the deadline's timers and the cgroup poller (right after the container)."""
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
            if not self.cpu_limit_s:
                continue
            used = cgroup.cpu_seconds(self.container)
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

"""The one door every container and volume of this process is created through.

A run that stops (a signal, an error) must leave nothing behind, yet its slot threads may be
about to create a container at the moment the clean-up sweeps. Closing the gate first waits for
the creations already in flight and refuses every later one, so the sweep that follows sees
everything this process will ever have made: nothing is created behind its back.

    with CREATION.creating("the train stage"):   # InfraError once the gate is closed
        api.create_container(...)
    CREATION.close()                             # then sweep: nothing can appear after it
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager

from orchestrator.errors import InfraError


class CreationGate:
    """Counts creations in flight; once closed, refuses new ones."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._busy = 0
        self._closed = False

    @property
    def closed(self) -> bool:
        return self._closed

    @contextmanager
    def creating(self, what: str, variant_id: str | None = None) -> Iterator[None]:
        """Hold the gate open while ``what`` is created.

        Raises:
            InfraError: the gate is closed (the run is stopping); nothing is created.
        """
        with self._cond:
            if self._closed:
                raise InfraError(f"the run is stopping: {what} is not created",
                                 variant_id=variant_id)
            self._busy += 1
        try:
            yield
        finally:
            with self._cond:
                self._busy -= 1
                self._cond.notify_all()

    def close(self, timeout: float = 30.0) -> bool:
        """Refuse new creations and wait up to ``timeout`` s for those in flight.

        Returns:
            True when none is in flight any more (a sweep now sees everything).
        """
        with self._cond:
            self._closed = True
            return self._cond.wait_for(lambda: self._busy == 0, timeout)

    def reopen(self) -> None:
        """Let creations through again (a new backend in the same process, e.g. a test)."""
        with self._cond:
            self._closed = False


CREATION = CreationGate()
"""This process's gate: one process drives one run at a time."""

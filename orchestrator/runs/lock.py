"""One driver per run: an OS file lock in the run folder, held for the life of the process.

``flock`` is released by the kernel when the process ends, however it ends (``kill -9``
included), so a lock never outlives its holder and there is nothing stale to clean. The file
holds the holder's pid, for the message a second driver gets. Readers (``status``, ``report``)
never take it.
"""

from __future__ import annotations

import fcntl
import os
from pathlib import Path

from orchestrator.errors import StoreError

LOCK = "run.lock"


class RunLockedError(StoreError):
    """Another live process drives this run."""


class RunLock:
    """Hold ``folder/run.lock`` until :meth:`release` or the end of the process.

    Raises (on construction):
        RunLockedError: another process holds it; the message names its pid.
    """

    def __init__(self, folder: Path):
        self.path = Path(folder) / LOCK
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 64, 0).decode(errors="replace").strip() or "?"
            os.close(fd)
            raise RunLockedError(
                f"run {Path(folder).name} is being driven by process {holder} (it holds "
                f"{self.path}); one process drives a run: wait for it to end, or stop it "
                f"(kill -TERM {holder}) and resume") from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        self._fd: int | None = fd

    def release(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None


def held(folder: Path) -> bool:
    """Whether a live process holds the run's lock (a reader's question; takes nothing)."""
    try:
        fd = os.open(Path(folder) / LOCK, os.O_RDONLY)
    except FileNotFoundError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    finally:
        os.close(fd)
    return False

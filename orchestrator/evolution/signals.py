"""SIGINT and SIGTERM while a run is driven: stop it cleanly, or, asked twice, fast.

CI cancels a job with SIGINT or SIGTERM to its shell, a person with Ctrl-C. Inside
:func:`trapped`, the first of either raises :class:`Stopped` in the main thread (where the loop
runs), so the run stops where it is: nothing half-written is committed (a store transaction rolls
back), and the launcher removes the run's containers, marks it ``interrupted`` and writes its
summaries. A second signal during that clean-up raises :class:`Forced`: the launcher then only
removes the containers and exits. Any signal after that is ignored, so the removal is never cut
short. The exit code is 128 + the first signal's number (130 for SIGINT, 143 for SIGTERM).
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from types import FrameType

SIGNALS = (signal.SIGINT, signal.SIGTERM)


class Stopped(BaseException):
    """The first SIGINT or SIGTERM. A ``BaseException`` (as ``KeyboardInterrupt``), so no
    ``except Exception`` on the way up mistakes it for an error of its own."""

    def __init__(self, signum: int):
        super().__init__(signal.Signals(signum).name)
        self.signum = signum

    @property
    def exit_code(self) -> int:
        return 128 + self.signum

    @property
    def name(self) -> str:
        return signal.Signals(self.signum).name


class Forced(Stopped):
    """A second signal while the first one's clean-up runs: skip to removing the containers."""


@contextmanager
def trapped() -> Iterator[None]:
    """Turn SIGINT and SIGTERM into :class:`Stopped`, then :class:`Forced`, then nothing, for
    the duration of the block; the previous handlers come back after it. Outside the main
    thread (where Python delivers no signals) it changes nothing."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def ignore_more(signum: int, _frame: FrameType | None) -> None:
        return None

    def second(signum: int, _frame: FrameType | None) -> None:
        _install(ignore_more)
        raise Forced(signum)

    def first(signum: int, _frame: FrameType | None) -> None:
        _install(second)
        raise Stopped(signum)

    before = {s: signal.getsignal(s) for s in SIGNALS}
    _install(first)
    try:
        yield
    finally:
        for s, handler in before.items():
            signal.signal(s, handler)


def _install(handler: Callable[[int, FrameType | None], None]) -> None:
    for s in SIGNALS:
        signal.signal(s, handler)

"""Named points in the orchestrator where a crash test can stop it dead.

The kill -9 tests run ``selfprog evolve`` as a subprocess with ``SELFPROG_PAUSE_AT=NAME`` and
``SELFPROG_PAUSE_FILE=PATH``. When the orchestrator reaches the named point for the
``SELFPROG_PAUSE_AFTER``-th time (default 1), it writes the name into the file and sleeps until it
is killed, so the test kills it at exactly that point rather than at a guessed moment. Unset,
``checkpoint`` costs one dictionary lookup.

Points: ``generate`` (inside a generator call), ``build`` (before a variant's image is built),
``store-write`` (inside a store transaction, before its commit), ``record`` (a result is on disk
but not yet in the store).
"""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path

_counts: dict[str, int] = {}
_lock = threading.Lock()


def checkpoint(name: str) -> None:
    """Pause forever at ``name`` when a crash test asked for it; otherwise return at once."""
    if os.environ.get("SELFPROG_PAUSE_AT") != name:
        return
    with _lock:
        _counts[name] = _counts.get(name, 0) + 1
        hit = _counts[name] == int(os.environ.get("SELFPROG_PAUSE_AFTER", "1"))
    if not hit:
        return
    marker = os.environ.get("SELFPROG_PAUSE_FILE")
    if marker:
        Path(marker).write_text(name)
    while True:  # the test kills us here
        time.sleep(3600)

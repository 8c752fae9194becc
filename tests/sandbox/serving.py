"""A model server as a bare local process, for tests that run an evaluator outside Docker."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


@contextmanager
def serving(program: Path, out: Path, sock: Path) -> Iterator[dict[str, str]]:
    """Run ``python -m sandbox.serve`` for ``program`` over ``out``; yield the evaluator's env.

    Its workers are Landlock-restricted (reads: Python, the program, ``out``); the sweep of a
    container's other processes is off (this is not a container).
    """
    path = os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))
    env = {**os.environ, "PYTHONPATH": path, "SELFPROG_OUT": str(out),
           "SELFPROG_SOCKET": str(sock), "SELFPROG_STAGE": "test"}
    server = subprocess.Popen([sys.executable, "-m", "sandbox.serve", "serve.py"], cwd=program,
                              env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        yield {"SELFPROG_SOCKET": str(sock), "SELFPROG_OUT": str(out)}
    finally:
        server.kill()
        server.wait(timeout=10)
        if server.stderr is not None:
            server.stderr.close()
        time.sleep(0)  # nothing else to release; the socket file goes with the tmp folder

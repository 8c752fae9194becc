"""The small API a program calls to talk to the orchestrator.

    from sandbox import report
    report.progress(step=100, loss=2.31)      # telemetry, any stage
    report.artifact("model.pt")               # the train stage names what it exported
    report.result(val_bpb=1.92)               # the evaluator's final metrics

Messages go to the protocol channel the harness opened (the file descriptor in
``SELFPROG_PROTOCOL_FD``), not to stdout: what a program or a loaded model prints can never be
taken for a message. Run outside the harness (bare, in a benchmark or on a GPU box), they go to
stdout.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import TextIO

from sandbox.protocol import Artifact, Error, Log, Progress, Result, _Message, dump

_stream: TextIO | None = None


def _channel() -> TextIO:
    global _stream
    if _stream is None:
        fd = os.environ.get("SELFPROG_PROTOCOL_FD")
        _stream = os.fdopen(int(fd), "w", buffering=1, closefd=False) if fd else sys.stdout
    return _stream


def _send(message: _Message) -> None:
    stream = _channel()
    stream.write(dump(message) + "\n")
    stream.flush()


def progress(step: int, **metrics: float) -> None:
    """Telemetry at training step ``step``; never used to rank the program."""
    _send(Progress(step=step, metrics={k: float(v) for k, v in metrics.items()}))


def result(**metrics: float) -> None:
    """The final metrics. Counted only from the trusted evaluator in the EVAL stage."""
    _send(Result(metrics={k: float(v) for k, v in metrics.items()}))


def artifact(path: str | os.PathLike[str]) -> None:
    """Declare a file under ``SELFPROG_OUT`` that the evaluator will read."""
    out = Path(os.environ.get("SELFPROG_OUT", "."))
    full = out / path
    _send(Artifact(path=str(Path(path)), bytes=full.stat().st_size if full.exists() else 0))


def log(text: str) -> None:
    """A note for the variant's log."""
    _send(Log(stream="harness", text=text[:4096]))


def error(kind: str, message: str) -> None:
    """A failure the program understood (bad data, a missing artifact ...)."""
    _send(Error(kind=kind[:64], message=message[:4096]))

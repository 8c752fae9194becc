"""``--summary-md``: the markdown a CI job shows (``$GITHUB_STEP_SUMMARY``), whatever happens.

The command wraps the run in a :class:`StepSummary`; the run attaches its folder as soon as the
run exists and says why it stopped when it does. On the way out, finished or not, the summary is
appended exactly once: the run's own ``summary.md`` after a normal end; after an exception, an
interrupt or a config error once the run exists, the run's summary rewritten with the failure as
its stop reason (``summary.json``, ``summary.md`` and ``best.diff`` in the run folder too); and a
short failure note when no run was ever created. Writing it never hides the original error.
"""

from __future__ import annotations

import logging
from pathlib import Path
from types import TracebackType

from orchestrator.errors import SelfprogError
from orchestrator.program import Program
from orchestrator.runs.store import Store
from orchestrator.runs.summary import failure_markdown, write_outputs

log = logging.getLogger(__name__)


class StepSummary:
    """Appends one markdown summary to ``path`` when the ``with`` block ends (nothing when
    ``path`` is None)."""

    def __init__(self, path: Path | None):
        self.path = path
        self.folder: Path | None = None
        self.program: Program | None = None
        self.reason: str | None = None

    def attach(self, folder: Path, program: Program) -> None:
        """The run exists: from now on a failure is summarised with its figures."""
        self.folder, self.program = folder, program

    def stopped(self, reason: str) -> None:
        """The run ended normally, for this reason."""
        self.reason = reason

    def __enter__(self) -> StepSummary:
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        if self.path is None:
            return
        why = None if exc is None else failure_reason(exc)
        try:
            text = self._markdown(why)
        except (OSError, ValueError, SelfprogError) as err:  # the store itself is unreadable
            log.warning("the run's figures could not be read for --summary-md: %s", err)
            text = failure_markdown(why or self.reason or f"unknown ({err})")
        try:
            with open(self.path, "a") as out:
                out.write(text)
        except OSError as err:
            log.warning("--summary-md %s could not be written: %s", self.path, err)

    def _markdown(self, failure: str | None) -> str:
        if self.folder is None or self.program is None:
            return failure_markdown(failure or "stopped before the run was created")
        if failure is None and (self.folder / "summary.md").is_file() and self.reason:
            return (self.folder / "summary.md").read_text()
        store = Store(self.folder)
        try:
            reason = failure or self.reason or "stopped"
            if failure is not None and self.reason:
                reason = f"{failure} (after the loop stopped: {self.reason})"
            write_outputs(store, self.program, reason=reason)
        finally:
            store.close()
        return (self.folder / "summary.md").read_text()


def failure_reason(exc: BaseException) -> str:
    """A stop reason for an exception: ``interrupted``, ``failed (exit N): message``..."""
    if isinstance(exc, KeyboardInterrupt):
        return "interrupted (Ctrl-C)"
    code = getattr(exc, "exit_code", None)
    if isinstance(exc, SystemExit):
        code = exc.code
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    name = "interrupted" if code in (130, 143) else "failed"
    return f"{name} (exit {code}): {text}" if code is not None else f"{name}: {text}"

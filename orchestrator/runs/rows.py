"""What the run store hands out: frozen snapshots of its rows, with fields named as its columns.

A row is what one transaction committed. Holding one never keeps the database open, and
no caller can change the store by changing a row, so the loop can keep them in memory and the
readers (summary, report, gc) can pass them around freely.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from orchestrator.result import Status


@dataclass(frozen=True)
class VariantRow:
    id: str
    idx: int
    parent_id: str | None
    folder: Path
    diff: str
    seed_diff: str
    created: float
    collected: bool
    verdict: str | None
    """``admitted``, ``rejected`` or ``recheck`` once its evaluations are settled."""
    value: float | None
    """Mean metric over its evaluations; None when one failed or before any finished."""

    def files(self) -> dict[str, str]:
        """The editable files, read back from the folder."""
        src = self.folder / "source"
        return {p.relative_to(src).as_posix(): p.read_text()
                for p in sorted(src.rglob("*")) if p.is_file()}


@dataclass(frozen=True)
class EvalRow:
    id: int
    variant_id: str
    seed: int
    purpose: str
    """``first``, ``noise`` (a seed measurement of the noise floor) or ``recheck``."""
    state: str
    """``pending`` or ``done``."""
    attempts: int
    status: Status | None
    metric: float | None
    duration_s: float | None
    finished: float | None
    error: str | None
    folder: Path
    """Where the runner writes its logs, events and artifacts, and the store ``result.json``:
    ``eval-<seed>`` in the variant's folder, read with the row so no caller looks the variant up
    again to find it."""


@dataclass(frozen=True)
class VariantRecord:
    """A variant and every one of its evaluations, as the transaction that wrote them left them.

    ``add_variant`` returns one (its evaluations are the pending jobs to submit) and so does
    ``finish_evaluation`` (all done: the variant is ready for selection), so the loop never reads
    back what it has just written.
    """

    variant: VariantRow
    evaluations: tuple[EvalRow, ...]
    """In the order they were queued; the first is the one whose artifacts a crowning uses."""

    @property
    def settled(self) -> bool:
        """Every evaluation is done: selection may judge the variant."""
        return bool(self.evaluations) and all(e.state == "done" for e in self.evaluations)

    @property
    def metrics(self) -> list[float | None]:
        """The trusted metric of each evaluation; None where one failed or is pending."""
        return [e.metric for e in self.evaluations]

"""What the run store hands out: frozen snapshots of its rows, with fields named as its columns.

A row is what one transaction committed. Holding one never keeps the database open, and
no caller can change the store by changing a row, so the loop can keep them in memory and the
readers (summary, report, gc) can pass them around freely.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from orchestrator.outcomes import Status


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

    @classmethod
    def from_row(cls, run: Path, r: Mapping[str, Any]) -> VariantRow:
        """The snapshot of a ``variants`` row of the run in folder ``run``."""
        return cls(id=r["id"], idx=r["idx"], parent_id=r["parent_id"], folder=run / r["folder"],
                   diff=r["diff"] or "", seed_diff=r["seed_diff"] or "", created=r["created"],
                   collected=bool(r["collected"]), verdict=r["verdict"], value=r["value"])

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

    @classmethod
    def from_row(cls, run: Path, r: Mapping[str, Any]) -> EvalRow:
        """The snapshot of an ``evaluations`` row joined with its variant's folder."""
        return cls(id=r["id"], variant_id=r["variant_id"], seed=r["seed"], purpose=r["purpose"],
                   state=r["state"], attempts=r["attempts"],
                   status=Status(r["status"]) if r["status"] else None, metric=r["metric"],
                   duration_s=r["duration_s"], finished=r["finished"], error=r["error"],
                   folder=run / r["variant_folder"] / f"eval-{r['seed']}")


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

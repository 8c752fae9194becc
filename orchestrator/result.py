"""Typed results: what one variant's run produced, and how results compare.

Selection uses only ``VariantResult.metrics`` (the EVAL stage's trusted result). A failed run has
no metric and ``Score.of`` ranks it worst, so selection never special-cases failure.
"""

from __future__ import annotations

import math
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from orchestrator.outcomes import Goal, Status

__all__ = ["Goal", "Score", "StageResult", "Status", "VariantResult"]

class StageResult(BaseModel):
    """One container's run."""

    model_config = ConfigDict(extra="forbid")

    stage: Literal["train", "eval"]
    status: Status
    exit_code: int | None = None
    """Container exit status; None when it never started."""
    duration_s: float = 0.0
    peak_memory_bytes: int | None = None
    messages: int = 0
    """Protocol messages accepted."""
    violations: list[str] = Field(default_factory=list)
    """Protocol violations (capped), e.g. a malformed line or a result from the train stage."""
    error: str | None = None
    """Why the stage did not end ``ok``, in one line."""
    log_path: str | None = None


class VariantResult(BaseModel):
    """The result record of one variant: what the store keeps and the CLI prints."""

    model_config = ConfigDict(extra="forbid")

    variant_id: str
    status: Status
    metrics: dict[str, float] = Field(default_factory=dict)
    """The evaluator's result: the only numbers selection reads."""
    telemetry: dict[str, float] = Field(default_factory=dict)
    """Summary of the train stage's progress messages (last value of each metric, steps)."""
    stages: list[StageResult] = Field(default_factory=list)
    image: str | None = None
    folder: str | None = None
    seed: int = 0
    error: str | None = None
    protected: bool = True
    """False when a peer program ran with ``isolation = "shared"``: the variant shared the
    evaluator's process, so its score is not protected (docs/peers.md)."""

    def stage(self, name: str) -> StageResult | None:
        return next((s for s in self.stages if s.stage == name), None)


class Score:
    """A metric value that knows its direction; failures rank below every real value."""

    __slots__ = ("key",)

    def __init__(self, value: float | None, goal: Goal):
        if value is None or not math.isfinite(value):
            self.key = -math.inf
        else:
            self.key = -value if goal == "minimize" else value

    @classmethod
    def of(cls, result: VariantResult, metric: str, goal: Goal) -> Score:
        value = result.metrics.get(metric) if result.status is Status.OK else None
        return cls(value, goal)

    def __lt__(self, other: Score) -> bool:
        return self.key < other.key

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Score) and self.key == other.key

    def __hash__(self) -> int:
        return hash(self.key)

    def __repr__(self) -> str:
        return f"Score({self.key})"

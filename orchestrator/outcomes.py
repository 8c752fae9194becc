"""The words of a result, without its models: a status and a metric's goal.

Kept apart from ``orchestrator.result`` (pydantic models) so that the readers of a run (``selfprog
status`` above all) start without building a model schema.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Literal

Goal = Literal["minimize", "maximize"]
"""Whether a smaller or a larger metric is better."""


class Status(StrEnum):
    OK = "ok"
    """Both stages ran and the evaluator reported the metric."""
    CRASH = "crash"
    """The program exited non-zero or was killed by a signal other than the OOM killer."""
    TIMEOUT = "timeout"
    """A stage ran past its wall-clock deadline and was killed."""
    OOM = "oom"
    """A container hit its memory limit."""
    INVALID = "invalid"
    """The rules were broken: no result, a bad artifact, a protocol violation, a rejected edit."""
    INFRA_ERROR = "infra_error"
    """The engine failed, not the variant: retried, never blamed on the variant."""


NOT_PROTECTED = "NOT PROTECTED (isolation = shared: the variant ran in the evaluator's process)"
"""The label of every result of a peer program run with ``isolation = "shared"``."""

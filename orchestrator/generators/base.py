"""The generator interface and the records it produces.

A generator turns a request (the program, its parents with their source and metrics, recent
failures) into proposals: each is the full text of the editable files after an edit, or a
rejection with its reason. Every language-model call is recorded, rejected or not.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol

from orchestrator.program import Program


@dataclass(frozen=True)
class Parent:
    variant_id: str
    files: dict[str, str] = field(hash=False)
    metrics: dict[str, float] = field(hash=False, default_factory=dict)
    history: tuple[tuple[str, float | None], ...] = ()
    """(variant id, metric) of its ancestors, oldest first."""


@dataclass(frozen=True)
class Failure:
    variant_id: str
    status: str
    error_tail: str
    """The last lines of the failing stage's log or the rejection reason."""


@dataclass(frozen=True)
class GenerationRequest:
    program: Program
    parents: tuple[Parent, ...]
    """Empty: write the program from its spec (auxiliary tasks)."""
    failures: tuple[Failure, ...] = ()
    n: int = 1
    """How many proposals to return."""
    seed: int = 0
    seen: frozenset[str] = field(default=frozenset(), hash=False)
    """Content hashes (``program.variant_hash``) of every source already evaluated or proposed:
    a proposal that reproduces one is rejected as a duplicate. The caller (the store) owns it."""
    spec: str | None = None
    """The task's description when writing a program from a spec (no parents); None: use the
    program's own description."""


def parents_or_seed(request: GenerationRequest, seed_files: dict[str, str]) -> tuple[Parent, ...]:
    """The request's parents, or the program's shipped files when it has none (a task's
    skeleton): the one rule for where an edit starts."""
    return request.parents or (Parent(variant_id="", files=seed_files),)


@dataclass
class GenerationCall:
    """One call to a backend, as the store records it."""

    backend: str
    model: str
    prompt: str
    response: str
    tokens_in: int = 0
    tokens_out: int = 0
    latency_s: float = 0.0
    error: str | None = None


@dataclass
class Proposal:
    parent_id: str | None
    files: dict[str, str] | None
    """Every editable file after the edit; None when rejected."""
    call: GenerationCall | None
    rejection: str | None = None
    """Why the proposal was rejected before any container (None: valid), as
    ``"<reason>: <detail>"`` with a reason from ``generators.reasons.Reason``."""
    diff_parent: str = ""
    """Unified diff of the editable files against the parent ('' when rejected)."""
    diff_seed: str = ""
    """Unified diff of the editable files against the program as shipped."""
    notes: list[str] = field(default_factory=list)
    """What was tolerated on the way: a fence without a REPLACE marker, a shifted indentation."""

    @property
    def valid(self) -> bool:
        return self.files is not None and self.rejection is None


class Generator(Protocol):
    name: str
    """Backend name as recorded: hf, openai, self, mutate."""

    def propose(self, request: GenerationRequest) -> list[Proposal]:
        """Return ``request.n`` proposals; what a model wrote is never raised, only rejected."""
        ...

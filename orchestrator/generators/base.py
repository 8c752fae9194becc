"""The generator interface and the records it produces.

A generator turns a request (the program, its parents with their source and metrics, recent
failures) into proposals: each is the full text of the editable files after an edit, or a
rejection with its reason. Every language-model call is recorded, rejected or not.

``Proposal.rejection`` holds ``"<reason>: <detail>"``; the reason is one of :class:`Reason`, so
the store and the reports can count rejections by kind.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Protocol

from orchestrator.errors import EditError
from orchestrator.program import Program, variant_hash


@dataclass(frozen=True)
class Profile:
    """How the parent trained and what it cost: what an ML engineer looks at before a change."""

    curve: tuple[tuple[int, tuple[tuple[str, float], ...]], ...] = ()
    """(step, ((metric, value), ...)) points of its training's progress, sampled evenly."""
    metrics: tuple[tuple[str, float], ...] = ()
    """Everything its evaluator reported (the selection metric, parameter count ...)."""
    train_s: float | None = None
    """Wall-clock seconds its TRAIN stage took."""
    peak_memory_bytes: int | None = None
    """The TRAIN container's peak memory."""
    feedback: str = ""
    """A peer evaluator's text feedback and artifacts (docs/peers.md): untrusted text."""


@dataclass(frozen=True)
class Parent:
    variant_id: str
    files: dict[str, str] = field(hash=False)
    metrics: dict[str, float] = field(hash=False, default_factory=dict)
    history: tuple[tuple[str, float | None], ...] = ()
    """(variant id, metric) of its ancestors, oldest first."""
    profile: Profile | None = field(default=None, hash=False)
    """Its training curve and costs, when it has run (None: the caller did not look)."""


@dataclass(frozen=True)
class Failure:
    variant_id: str
    status: str
    error_tail: str
    """The last lines of the failing stage's log or the rejection reason."""
    diff: str = ""
    """What the failed change was (unified diff against its parent), when known."""
    log_tail: str = ""
    """The end of the failing stage's log: the traceback a crash printed."""


@dataclass(frozen=True)
class Tried:
    """A change already tried from the parent (or nearby), with how it did."""

    variant_id: str
    diff: str
    value: float | None
    """Its metric; None when it failed or has not finished."""
    outcome: str
    """``better``, ``worse``, ``within noise``, a failure status, or ``running``."""


@dataclass(frozen=True)
class RunFacts:
    """The run's fixed terms, as the model should read them."""

    budget_s: float
    """The training budget the program is told (``SELFPROG_TIME_BUDGET_S``)."""
    budget_counts: str
    """What the budget counts and what enforces it, in words."""
    memory_bytes: int
    cpus: float
    gpus: int
    noise: float | None
    """The noise floor of the metric: a difference smaller than this is not a result."""


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
    tried: tuple[Tried, ...] = ()
    """Changes already tried from the parent, worse ones included (not to be proposed again)."""
    facts: RunFacts | None = None
    """Budget, resources and noise floor; None: the prompt leaves them out."""
    focus: str = ""
    """What this proposal should change (``architecture``, ``capacity``, ``learning dynamics``);
    varied across proposals from one parent so they do not all get the same prompt."""
    from_spec: bool = False
    """With no parents: write the program from its spec alone, never shown the shipped source
    (a task's reference solution)."""


def starts(request: GenerationRequest, seed_files: dict[str, str],
           salt: str = "") -> list[tuple[int, Parent, random.Random]]:
    """Where each of the request's ``n`` proposals starts, and the random stream it draws from:
    the one rule for both, shared by the backends that edit without a language model.

    Proposal ``i`` edits parent ``i`` modulo the number of parents, or the program's shipped
    files when the request has none (a task's skeleton). Its stream is seeded by ``salt``, the
    request's seed, the parent's content and ``i``, so a proposal never depends on another's
    draws and the same request always gives the same proposals.
    """
    parents = request.parents or (Parent(variant_id="", files=seed_files),)
    out = []
    for index in range(request.n):
        parent = parents[index % len(parents)]
        stream = f"{salt}{request.seed}:{variant_hash(parent.files)}:{index}"
        out.append((index, parent, random.Random(stream)))
    return out


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
    tokens_reasoning: int = 0
    """Output tokens the server says went to hidden reasoning (part of ``tokens_out``)."""
    finish_reason: str | None = None
    """Why the answer ended, as the backend says: ``stop``, ``length`` (cut at the token
    limit) ...; None when the backend does not tell."""
    kind: str = ""
    """What was asked: ``edit`` (an instruction-following edit), ``hole`` (a setting's value),
    ``completion`` (a block completed), ``spec`` (a first draft from a task's spec)."""
    generator: str = ""
    """Which model wrote it, for a model that is itself a variant (``self``): that variant's id;
    '' for an external model."""


class Reason(StrEnum):
    """Why a proposal is rejected before anything is built: the kinds the reports count."""

    NO_EDIT = "no_edit"
    """The answer holds no SEARCH/REPLACE block and no usable code block."""
    UNTERMINATED = "unterminated"
    """A SEARCH/REPLACE block started but never ended (a cut-off answer)."""
    TRUNCATED = "truncated"
    """A full rewrite whose fence never closed, or far shorter than the file it replaces."""
    NOT_EDITABLE = "not_editable"
    """An edit targets a file the program does not declare editable (e.g. its evaluator)."""
    NO_MATCH = "no_match"
    """A SEARCH text is found nowhere in its file, even tolerantly."""
    AMBIGUOUS = "ambiguous"
    """A SEARCH text matches more than one place: it must apply exactly once."""
    SYNTAX = "syntax"
    """An edited Python file does not parse."""
    ELIDED = "elided"
    """An edit holds a placeholder (``# ... rest unchanged ...``) where code should be."""
    UNDEFINED = "undefined"
    """An edited Python file uses a name that is defined nowhere (it would crash at run time)."""
    TOO_LARGE = "too_large"
    """An edited file exceeds the size limit."""
    UNCHANGED = "unchanged"
    """The edits leave the parent's source as it was."""
    DUPLICATE = "duplicate"
    """The resulting source has been seen before (same content hash)."""
    CONTEXT = "context"
    """The prompt cannot fit the model's context even with history and failures dropped."""
    GENERATION_ERROR = "generation_error"
    """The backend produced no answer: deadline, connection or server error."""
    EXHAUSTED = "exhausted"
    """``mutate`` or ``self`` found no unseen variant within its attempts."""


class Rejected(EditError):
    """A proposal breaks a rule; carries the reason and a one-line detail."""

    def __init__(self, reason: Reason, detail: str, *, variant_id: str | None = None):
        self.reason = reason
        self.detail = detail
        super().__init__(f"{reason}: {detail}", variant_id=variant_id)

    @property
    def text(self) -> str:
        """The string recorded as ``Proposal.rejection``."""
        return f"{self.reason}: {self.detail}"


@dataclass
class Proposal:
    parent_id: str | None
    files: dict[str, str] | None
    """Every editable file after the edit; None when rejected."""
    call: GenerationCall | None
    rejection: str | None = None
    """Why the proposal was rejected before any container (None: valid), as
    ``"<reason>: <detail>"`` with a reason from :class:`Reason`."""
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
    """Backend name as recorded: one of ``config.BACKENDS`` but ``auto``."""

    def propose(self, request: GenerationRequest) -> list[Proposal]:
        """Return ``request.n`` proposals; what a model wrote is never raised, only rejected."""
        ...

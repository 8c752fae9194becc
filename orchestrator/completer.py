"""The interface between the ``self`` generator and whatever runs an exported code model.

The generator never loads a model itself: a factory hands it a :class:`Completer`, by default
the sandboxed one (``containers.sampler.SandboxedCompleter``: one hardened container per batch),
or, for a model you trust, the in-process one (``generators.inprocess.InProcessCompleter``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from orchestrator.errors import CodeLMError


@dataclass(frozen=True)
class CompletionRequest:
    """One completion to sample from a byte-level code model."""

    prompt: str
    """The text to continue; only its last ``context`` bytes are seen."""
    max_new_bytes: int
    """Most bytes to sample."""
    temperature: float = 0.8
    """0 is greedy; higher is more random."""
    seed: int = 0
    """The same seed, prompt and model give the same text on the same device."""
    stop: str | None = None
    """End early once the completion contains it; the result is cut before it."""
    constraint: str | None = None
    """None, or ``"python-block"``: the prompt ends inside a Python block at a line start, and
    only lines after which the block can still parse are kept (a line that cannot is drawn
    again); the sample ends where a line returns to the top level. It may end early, and its
    last line may be cut by ``max_new_bytes``. Or ``"python-expr"``: the prompt ends where an
    expression goes, and the sample is one expression of ``sandbox.pyexpr``'s small language
    using only :attr:`names`, ended by the model's newline (not included); it may be '' when
    the model gives no whole expression within ``max_new_bytes``."""
    names: tuple[str, ...] = ()
    """Under ``python-expr``: the names (dotted ones as single words) the sample may use."""


CONSTRAINTS: tuple[str | None, ...] = (None, "python-block", "python-expr")
"""The values :attr:`CompletionRequest.constraint` may take."""


@dataclass(frozen=True)
class ScoreRequest:
    """Continuations whose likelihood after one prompt is asked for."""

    prompt: str
    """The text before each continuation; only its last bytes that fit the context are seen."""
    continuations: tuple[str, ...]
    """Non-empty texts, each scored on its own after the prompt."""


class Completer(Protocol):
    """Samples completions from one exported model."""

    context: int
    """Most bytes the model attends to."""

    def complete_many(self, requests: list[CompletionRequest]) -> list[str | CodeLMError]:
        """Each request's completion (without its prompt), or the error the model gave on it.

        Raises:
            CodeLMError: the batch failed as a whole (engine, deadline, crash, bad output).
        """
        ...

    def score_many(self, requests: list[ScoreRequest]) -> list[list[float] | CodeLMError]:
        """For each request, the natural-log probability of each continuation after its prompt
        (summed over the continuation), or the error the model gave on that request.

        Raises:
            CodeLMError: the batch failed as a whole.
        """
        ...

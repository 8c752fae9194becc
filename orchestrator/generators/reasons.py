"""Why a proposal is rejected before anything is built.

``Proposal.rejection`` holds ``"<reason>: <detail>"``; the reason is one of :class:`Reason`, so
the store and the reports can count rejections by kind.
"""

from __future__ import annotations

from enum import StrEnum

from orchestrator.errors import EditError


class Reason(StrEnum):
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

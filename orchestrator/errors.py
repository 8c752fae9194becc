"""One exception hierarchy for the orchestrator.

Errors that concern a variant carry its id and the path of its log, so a message alone says
where to look.
"""

from __future__ import annotations

from pathlib import Path


class SelfprogError(Exception):
    """Root of every error selfprog raises on purpose."""

    exit_code = 1

    def __init__(self, message: str, *, variant_id: str | None = None, log: Path | None = None):
        self.variant_id = variant_id
        self.log = log
        parts = [message]
        if variant_id:
            parts.append(f"variant {variant_id}")
        if log:
            parts.append(f"log: {log}")
        super().__init__(" | ".join(parts))


class ConfigError(SelfprogError):
    """A configuration or manifest is invalid; the message names the key."""

    exit_code = 2


class EngineError(SelfprogError):
    """The Docker engine is missing, unreachable, or failed in a way that is not the variant's."""

    exit_code = 3


class InfraError(EngineError):
    """The engine failed while running a variant (not the variant's fault): the run is retried."""


class ImageError(EngineError):
    """A runtime or variant image could not be built."""


class GpuUnavailableError(ConfigError):
    """A program asks for GPUs on a host that has no GPU runtime."""


class EditError(SelfprogError):
    """A proposed edit is malformed or breaks a rule (not editable, does not apply ...)."""


class CodeLMError(SelfprogError):
    """An exported code model is missing, malformed, or failed while sampling."""


class NoProposalsError(SelfprogError):
    """The generator produced no valid proposal in a whole run: every call failed or every
    answer was rejected. The run is stored (and reported); nothing was evolved."""

    exit_code = 5


class Interrupted(SelfprogError):
    """SIGINT (Ctrl-C) or SIGTERM stopped a run; it resumes from its store. The exit code is
    128 + the signal's number: 130 for SIGINT, 143 for SIGTERM."""

    exit_code = 130

    def __init__(self, message: str, *, exit_code: int = 130):
        super().__init__(message)
        self.exit_code = exit_code


class StoreError(SelfprogError):
    """The run store is missing, corrupt, or belongs to another run."""

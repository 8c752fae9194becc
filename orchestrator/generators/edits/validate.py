"""Validate a proposal before anything is built: a rejection costs no container.

Every language-model backend ends here: :func:`proposal_from_answer` parses the answer, applies
its edits to the parent, checks the result and returns a :class:`Proposal` — valid, or rejected
with its reason. It never raises for what a model wrote.
"""

from __future__ import annotations

import ast
from collections.abc import Set

from pyflakes import api as pyflakes_api
from pyflakes import messages as pyflakes_messages

from orchestrator.generators.base import GenerationCall, Proposal, Reason, Rejected
from orchestrator.generators.config import ValidationConfig
from orchestrator.generators.edits.apply import apply_edits
from orchestrator.generators.edits.diffs import unified_diff
from orchestrator.generators.edits.parse import parse_edits
from orchestrator.program import variant_hash

_SLACK_BYTES = 2048


def check_files(
    files: dict[str, str],
    parent: dict[str, str],
    editable: tuple[str, ...],
    seen: Set[str],
    limits: ValidationConfig = ValidationConfig(),
) -> None:
    """Check an edited set of editable files against every rule.

    Raises:
        Rejected: a file outside ``editable``, a file over the size limit, a Python file that
            does not parse or uses an undefined name, no change from the parent, or a source
            whose hash is in ``seen``.
    """
    extra = sorted(set(files) - set(editable))
    if extra:
        raise Rejected(Reason.NOT_EDITABLE, f"touches {extra}; editable: {list(editable)}")
    for path, text in sorted(files.items()):
        size = len(text.encode())
        grown = int(len(parent.get(path, "").encode()) * limits.max_growth) + _SLACK_BYTES
        cap = min(limits.max_file_bytes, grown)
        if size > cap:
            raise Rejected(Reason.TOO_LARGE, f"{path} is {size} bytes; the limit is {cap}")
    for path, text in sorted(files.items()):
        if path.endswith(".py"):
            _check_syntax(path, text)
            _check_names(path, text)
    if files == parent:
        raise Rejected(Reason.UNCHANGED, "the edits leave the source as it was")
    if variant_hash(files) in seen:
        raise Rejected(Reason.DUPLICATE, f"source {variant_hash(files)[:16]} was seen before")


def undefined_names(text: str, path: str = "<proposal>") -> list[str]:
    """Names the source uses but never defines, imports or gets from builtins (pyflakes's
    check), in order of first use; [] for a source that does not parse (that is ``syntax``)."""
    reporter = _Names()
    pyflakes_api.check(text, path, reporter)
    return list(dict.fromkeys(reporter.names))


class _Names:
    """A pyflakes reporter that keeps the undefined names and ignores everything else."""

    def __init__(self) -> None:
        self.names: list[str] = []

    def flake(self, message: pyflakes_messages.Message) -> None:
        if isinstance(message, pyflakes_messages.UndefinedName):
            self.names.append(str(message.message_args[0]))

    def syntaxError(self, *args: object) -> None:  # noqa: N802 (pyflakes's name)
        return

    def unexpectedError(self, *args: object) -> None:  # noqa: N802 (pyflakes's name)
        return


def _check_names(path: str, text: str) -> None:
    names = undefined_names(text, path)
    if names:
        raise Rejected(Reason.UNDEFINED, f"{path} uses {', '.join(names[:5])}, defined nowhere")


def _check_syntax(path: str, text: str) -> None:
    try:
        ast.parse(text, filename=path)
    except SyntaxError as exc:
        raise Rejected(Reason.SYNTAX, f"{path}:{exc.lineno}: {exc.msg}") from None
    except ValueError as exc:  # null bytes
        raise Rejected(Reason.SYNTAX, f"{path}: {exc}") from None


def _check_rewrites(out: dict[str, str], parent: dict[str, str], limits: ValidationConfig,
                    rewritten: list[str]) -> None:
    for path in rewritten:
        before, after = len(parent.get(path, "")), len(out[path])
        if before and after < limits.min_rewrite_fraction * before:
            raise Rejected(
                Reason.TRUNCATED,
                f"the rewrite of {path} has {after} of its {before} characters: a snippet or a "
                "cut-off answer, not a whole file",
            )


def accept(
    files: dict[str, str],
    parent: dict[str, str],
    seed_files: dict[str, str],
    editable: tuple[str, ...],
    seen: Set[str],
    limits: ValidationConfig,
) -> tuple[str, str]:
    """Check ``files`` and return its diffs against the parent and the seed.

    Raises:
        Rejected: as :func:`check_files`.
    """
    check_files(files, parent, editable, seen, limits)
    return unified_diff(parent, files), unified_diff(seed_files, files)


def proposal_from_answer(
    answer: str,
    *,
    parent_id: str | None,
    parent: dict[str, str],
    seed_files: dict[str, str],
    editable: tuple[str, ...],
    seen: Set[str],
    call: GenerationCall | None,
    limits: ValidationConfig = ValidationConfig(),
) -> Proposal:
    """Turn a model's answer into a valid or rejected proposal. Never raises for its content."""
    parsed = parse_edits(answer, editable)
    try:
        files, notes = apply_edits(parent, parsed, editable)
        _check_rewrites(files, parent, limits, [r.path or editable[0] for r in parsed.rewrites])
        diff_parent, diff_seed = accept(files, parent, seed_files, editable, seen, limits)
    except Rejected as exc:
        return Proposal(parent_id, None, call, rejection=exc.text, notes=list(parsed.notes))
    return Proposal(parent_id, files, call, diff_parent=diff_parent, diff_seed=diff_seed,
                    notes=notes)


def rejected(parent_id: str | None, call: GenerationCall | None, exc: Rejected) -> Proposal:
    """A proposal that never got as far as an edit (a failed call, a prompt that cannot fit)."""
    return Proposal(parent_id, None, call, rejection=exc.text)

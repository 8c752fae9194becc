"""Validate a proposal before anything is built: a rejection costs no container.

Every language-model backend ends here: :func:`proposal_from_answer` parses the answer, applies
its edits to the parent, checks the result and returns a :class:`Proposal` — valid, or rejected
with its reason. It never raises for what a model wrote.
"""

from __future__ import annotations

import ast
import re
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
            _check_elisions(path, text, parent.get(path, ""))
            _check_syntax(path, text)
            _check_names(path, text)
    if files == parent:
        raise Rejected(Reason.UNCHANGED, "the edits leave the source as it was")
    if all(_same_code(files[p], parent.get(p)) for p in files if files[p] != parent.get(p)):
        raise Rejected(Reason.UNCHANGED, "only comments, docstrings or whitespace changed: the "
                       "program would run exactly as before")
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


_ELISION = re.compile(
    r"^\s*(#|//)\s*(\.\.\.|…|\[\.\.\.\]|\(\.\.\.\))?.*"
    r"\b(rest|remaining|existing|unchanged|same as (before|above)|omitted|as before|previous|"
    r"other (code|methods|functions)|truncated|elided|not shown)\b", re.I)
_DOTS = re.compile(r"^\s*(#|//)?\s*(\.\.\.|…)\s*$")


def elisions(text: str, parent: str) -> list[str]:
    """Lines that stand for code the model left out (``# ... rest unchanged ...``, a bare
    ``# ...``), new in ``text`` (a comment the parent already had is its own)."""
    before = set(parent.split("\n"))
    return [line.strip() for line in text.split("\n")
            if line not in before and _is_elision(line)]


_SURE = re.compile(r"\b(unchanged|omitted|elided|not shown|same as (before|above)|as before)\b",
                   re.I)


def _is_elision(line: str) -> bool:
    if _DOTS.match(line):
        return line.strip() != "..."  # a bare Ellipsis statement is code
    if not _ELISION.match(line):
        return False
    return "..." in line or "…" in line or bool(_SURE.search(line))


def _check_elisions(path: str, text: str, parent: str) -> None:
    found = elisions(text, parent)
    if found:
        raise Rejected(Reason.ELIDED, f"{path} holds {found[0][:60]!r} in place of code: every "
                       "line of an edited region must be written out")


def _same_code(text: str, parent: str | None) -> bool:
    """Whether two sources are the same program: equal syntax trees once docstrings are
    dropped (comments and whitespace are not in the tree)."""
    if parent is None:
        return False
    try:
        return _code_tree(text) == _code_tree(parent)
    except (SyntaxError, ValueError):
        return False


def _code_tree(text: str) -> str:
    tree = ast.parse(text)
    for node in ast.walk(tree):
        body = getattr(node, "body", None)
        if isinstance(body, list) and body and isinstance(body[0], ast.Expr) and isinstance(
                body[0].value, ast.Constant) and isinstance(body[0].value.value, str):
            node.body = body[1:] or [ast.Pass()]  # type: ignore[attr-defined]
    return ast.dump(tree, include_attributes=False)


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
    cut = call is not None and call.finish_reason == "length"
    parsed = parse_edits(answer, editable, truncated=cut)
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

"""``self``: the program's own exported code LM writes its next version (the paper's loop).

A byte-level model cannot follow instructions, so the edit is a completion. A *region* is a
top-level ``def``, ``class`` or compound statement of an editable Python file. The generator picks
a region and a line inside its body (seeded), gives the model the source up to that line, and lets
the sample replace the rest of the region: the sample is cut where it returns to the top level
(the block has ended) or at its last complete line, and the code after the region is kept. The
result is validated like any proposal.

This module never loads a model: the factory (``generators.auto``) hands it a
:class:`~orchestrator.completer.Completer` and the loader for the next one, so neither Docker nor
torch is imported here, and the generator is tested with a fake completer.
"""

from __future__ import annotations

import ast
import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from orchestrator.completer import Completer, CompletionRequest
from orchestrator.errors import SelfprogError
from orchestrator.generators.base import (
    GenerationCall,
    GenerationRequest,
    Parent,
    Proposal,
    Reason,
    Rejected,
    starts,
)
from orchestrator.generators.config import CodeLMConfig, GeneratorConfig
from orchestrator.generators.edits.validate import accept, rejected
from orchestrator.program import variant_hash

_STOP = "\n\n\n"
"""Two blank lines: where PEP 8 code ends a top-level block."""


def regions(text: str) -> list[tuple[int, int]]:
    """``(first, end)`` 0-based line ranges of the bodies of top-level compound statements:
    the lines a sample may rewrite (``end`` exclusive)."""
    try:
        tree = ast.parse(text)
    except (SyntaxError, ValueError):
        return []
    spans = []
    for node in tree.body:
        body = getattr(node, "body", None)
        if not body or not isinstance(body, list) or node.end_lineno is None:
            continue
        first = body[0].lineno - 1
        if isinstance(body[0], ast.Expr) and isinstance(getattr(body[0], "value", None),
                                                        ast.Constant) and len(body) > 1:
            first = body[1].lineno - 1  # keep the docstring: it tells the model what to write
        if node.end_lineno - first >= 2:
            spans.append((first, node.end_lineno))
    return spans


def splice(text: str, cut: int, end: int, sample: str, finished: bool) -> str:
    """The file with lines ``cut..end`` replaced by the sample's part that belongs to the block.

    The sample ends at the first line that is back at the top level; when it ran out of bytes
    (``finished`` False) its last, partial line is dropped.

    Raises:
        Rejected: (``no_edit``) not one line of the sample belongs to the block.
    """
    lines = text.split("\n")
    kept = []
    sample_lines = sample.split("\n")
    if not finished:
        sample_lines = sample_lines[:-1]
    for line in sample_lines:
        if line.strip() and not line[0].isspace() and not line.lstrip().startswith("#"):
            break
        kept.append(line)
    while kept and not kept[-1].strip():
        kept.pop()
    if not kept:
        raise Rejected(Reason.NO_EDIT, "the sample holds no complete line of the block")
    return "\n".join(lines[:cut] + kept + lines[end:])


class SelfGenerator:
    """Samples edits from an exported codelm."""

    name = "self"

    def __init__(self, config: GeneratorConfig, lm: Completer,
                 load: Callable[[Path], Completer]):
        """
        Args:
            config: the generator's configuration (``codelm`` sets budgets and the context).
            lm: the completer of the model to sample now.
            load: makes the completer of another exported model (see :meth:`use`).
        """
        self.config = config
        self.codelm: CodeLMConfig = config.codelm
        self.model_name = self.codelm.model or "(given)"
        self.lm = lm
        self.load = load

    def use(self, folder: str | Path) -> None:
        """Switch to another exported model, e.g. the new best variant's artifacts.

        Raises:
            ConfigError: the folder holds no usable model (the current one is kept).
        """
        self.lm = self.load(Path(folder))
        self.model_name = str(folder)

    def propose(self, request: GenerationRequest) -> list[Proposal]:
        editable = request.program.manifest.program.editable
        seed_files = request.program.source_files()
        seen = set(request.seen)
        plans = [self._plan(parent, rng, request.seed * 100_003 + index)
                 for index, parent, rng in starts(request, seed_files, salt="self:")]
        todo = [plan for plan in plans if isinstance(plan, _Plan)]
        samples = self._sample(todo)
        out = []
        for plan in plans:
            if isinstance(plan, _Plan):
                plan = self._finish(plan, samples[id(plan)], seed_files, editable, seen)
            if plan.valid and plan.files is not None:
                seen.add(variant_hash(plan.files))
            out.append(plan)
        return out

    def _plan(self, parent: Parent, rng: random.Random, seed: int) -> _Plan | Proposal:
        choices = [(path, span) for path in sorted(parent.files) if path.endswith(".py")
                   for span in regions(parent.files[path])]
        if not choices:
            return rejected(parent.variant_id or None, None,
                            Rejected(Reason.NO_EDIT, "no editable region"))
        path, (first, end) = rng.choice(choices)
        cut = rng.randrange(first, end)
        lines = parent.files[path].split("\n")
        prefix = "\n".join(lines[:cut]) + "\n"
        region_bytes = len("\n".join(lines[cut:end]).encode())
        budget = min(self.codelm.max_new_bytes, max(64, 2 * region_bytes + 64))
        prompt = prefix.encode()[-self.codelm.context_bytes:].decode(errors="ignore")
        return _Plan(parent, path, cut, end, prompt, budget, seed)

    def _sample(self, plans: list[_Plan]) -> dict[int, tuple[str | Exception, float]]:
        """Each plan's sample (or the error that stopped it) and the seconds the batch took:
        one ``complete_many`` call (one container, when sandboxed) for the whole batch. An error
        of the batch as a whole is every plan's error: it becomes their rejections."""
        if not plans:
            return {}
        requests = [CompletionRequest(p.prompt, p.budget, self.config.temperature, p.seed, _STOP)
                    for p in plans]
        started = time.monotonic()
        texts: list[str | Exception]
        try:
            texts = list(self.lm.complete_many(requests))
        except SelfprogError as exc:  # CodeLMError: the engine, the deadline, a crash
            texts = [exc] * len(plans)
        took = time.monotonic() - started
        return {id(p): (t, took) for p, t in zip(plans, texts, strict=True)}

    def _finish(self, plan: _Plan, sampled: tuple[str | Exception, float],
                seed_files: dict[str, str], editable: tuple[str, ...], seen: set[str]) -> Proposal:
        parent, path, cut, end = plan.parent, plan.path, plan.cut, plan.end
        parent_id = parent.variant_id or None
        call = GenerationCall(self.name, self.model_name, plan.prompt, "")
        sample, call.latency_s = sampled
        if isinstance(sample, Exception):
            call.error = f"{type(sample).__name__}: {sample}"
            return rejected(parent_id, call, Rejected(Reason.GENERATION_ERROR, call.error))
        call.response = sample
        call.tokens_in, call.tokens_out = len(plan.prompt.encode()), len(sample.encode())
        finished = len(sample.encode()) < plan.budget
        files = dict(parent.files)
        try:
            files[path] = splice(parent.files[path], cut, end, sample, finished)
            diff_parent, diff_seed = accept(files, parent.files, seed_files, editable, seen,
                                            self.config.validation)
        except Rejected as exc:
            return rejected(parent_id, call, exc)
        note = f"{path}: lines {cut + 1}-{end} resampled"
        return Proposal(parent_id, files, call, diff_parent=diff_parent, diff_seed=diff_seed,
                        notes=[note])


@dataclass(frozen=True)
class _Plan:
    """Where one proposal cuts its parent, and the prompt and byte budget that go with it."""

    parent: Parent
    path: str
    cut: int
    end: int
    prompt: str
    budget: int
    seed: int

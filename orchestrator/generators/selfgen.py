"""``self``: the program's own exported code LM writes its next version (the paper's loop).

A byte-level model cannot follow instructions, so the edit is a completion. A *region* is a
top-level ``def``, ``class`` or compound statement of an editable Python file. The generator picks
a region and a line inside its body (seeded), gives the model the source up to that line, and lets
the sample replace the rest of the region: the sample is cut where it returns to the top level
(the block has ended) or at its last complete line, and the code after the region is kept. The
result is validated like any proposal.
"""

from __future__ import annotations

import ast
import random
import time
from pathlib import Path
from typing import Protocol

from orchestrator.errors import ConfigError, SelfprogError
from orchestrator.generators.base import GenerationCall, GenerationRequest, Parent, Proposal
from orchestrator.generators.config import CodeLMConfig, GeneratorConfig
from orchestrator.generators.reasons import Reason, Rejected
from orchestrator.generators.validate import accept, rejected
from orchestrator.program import variant_hash

_STOP = "\n\n\n"
"""Two blank lines: where PEP 8 code ends a top-level block."""


class Completer(Protocol):
    """What ``orchestrator.codelm.ExportedCodeLM`` offers."""

    def complete(self, prompt: str, max_new_bytes: int, temperature: float = 0.8, seed: int = 0,
                 stop: str | None = None) -> str: ...


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

    def __init__(self, config: GeneratorConfig, lm: Completer | None = None):
        self.config = config
        self.codelm: CodeLMConfig = config.codelm
        self.model_name = self.codelm.model or "(given)"
        self.lm = lm if lm is not None else self.load(self.codelm.model)

    @staticmethod
    def load(folder: str | Path | None) -> Completer:
        """Load an exported codelm (``model.pt`` + ``model.json``).

        Raises:
            ConfigError: no folder configured, or the folder holds no loadable model.
        """
        from orchestrator.codelm import CodeLMError, ExportedCodeLM

        if not folder:
            raise ConfigError("generator.codelm.model is not set (an exported codelm's folder)")
        try:
            return ExportedCodeLM.load(Path(folder))
        except CodeLMError as exc:
            raise ConfigError(str(exc)) from None

    def use(self, folder: str | Path) -> None:
        """Switch to another exported model, e.g. the new best variant's artifacts."""
        self.lm = self.load(folder)
        self.model_name = str(folder)

    def propose(self, request: GenerationRequest) -> list[Proposal]:
        program = request.program
        editable = program.manifest.program.editable
        seed_files = program.source_files()
        parents = request.parents or (Parent(variant_id="", files=seed_files),)
        seen = set(request.seen)
        out = []
        for index in range(request.n):
            parent = parents[index % len(parents)]
            rng = random.Random(f"self:{request.seed}:{variant_hash(parent.files)}:{index}")
            proposal = self._one(parent, rng, request.seed * 100_003 + index, seed_files,
                                 editable, seen)
            if proposal.valid and proposal.files is not None:
                seen.add(variant_hash(proposal.files))
            out.append(proposal)
        return out

    def _one(self, parent: Parent, rng: random.Random, seed: int, seed_files: dict[str, str],
             editable: tuple[str, ...], seen: set[str]) -> Proposal:
        parent_id = parent.variant_id or None
        choices = [(path, span) for path in sorted(parent.files) if path.endswith(".py")
                   for span in regions(parent.files[path])]
        if not choices:
            return rejected(parent_id, None, Rejected(Reason.NO_EDIT, "no editable region"))
        path, (first, end) = rng.choice(choices)
        cut = rng.randrange(first, end)
        lines = parent.files[path].split("\n")
        prefix = "\n".join(lines[:cut]) + "\n"
        region_bytes = len("\n".join(lines[cut:end]).encode())
        budget = min(self.codelm.max_new_bytes, max(64, 2 * region_bytes + 64))
        prompt = prefix.encode()[-self.codelm.context_bytes:].decode(errors="ignore")
        call = GenerationCall(self.name, self.model_name, prompt, "")
        started = time.monotonic()
        try:
            sample = self.lm.complete(prompt, max_new_bytes=budget,
                                      temperature=self.config.temperature, seed=seed, stop=_STOP)
        except (SelfprogError, RuntimeError, ValueError) as exc:  # CodeLMError, torch errors
            call.error = f"{type(exc).__name__}: {exc}"
            return rejected(parent_id, call, Rejected(Reason.GENERATION_ERROR, call.error))
        call.latency_s = time.monotonic() - started
        call.response = sample
        call.tokens_in, call.tokens_out = len(prompt.encode()), len(sample.encode())
        finished = len(sample.encode()) < budget
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

"""What the language-model backends share: prompt, sample, then validate every answer.

A backend supplies three things — a token counter, its context length and a batch call that
returns one :class:`GenerationCall` per prompt — and :class:`LMGenerator` does the rest: it picks
the parent of each proposal (round-robin), fits the prompt, and turns each answer into a valid or
rejected proposal. A failed call is a ``generation_error`` rejection, never an exception.
"""

from __future__ import annotations

from orchestrator.generators.base import (
    GenerationCall,
    GenerationRequest,
    Parent,
    Proposal,
    Reason,
    Rejected,
)
from orchestrator.generators.config import GeneratorConfig
from orchestrator.generators.edits.validate import proposal_from_answer, rejected
from orchestrator.generators.prompt import Prompt, build_prompt
from orchestrator.program import variant_hash

CONTEXT_ERROR = "context: "
"""How a backend's call error starts when the server found the prompt too long for the model:
the proposal is then a ``context`` rejection, not a ``generation_error``."""


class LMGenerator:
    """Base of the ``hf`` and ``openai`` backends."""

    name = "lm"
    model_name = ""

    def __init__(self, config: GeneratorConfig):
        self.config = config

    # -- what a backend provides ------------------------------------------------------------
    def count_tokens(self, text: str) -> int:
        """Tokens ``text`` takes in the model's context (an estimate where no tokenizer is at
        hand: about three characters per token, on the safe side for code)."""
        return len(text) // 3 + 1

    @property
    def context_tokens(self) -> int:
        raise NotImplementedError

    def complete(self, prompts: list[Prompt], seed: int) -> list[GenerationCall]:
        """One call per prompt; a failed call has ``error`` set and an empty response."""
        raise NotImplementedError

    # -- the shared flow ----------------------------------------------------------------------
    def answer_budget(self) -> int:
        """Tokens kept free for the answer: ``max_new_tokens``, at most half the context."""
        return min(self.config.max_new_tokens, self.context_tokens // 2)

    def propose(self, request: GenerationRequest) -> list[Proposal]:
        program = request.program
        editable = program.manifest.program.editable
        seed_files = program.source_files()
        budget = self.context_tokens - self.answer_budget()
        slots: list[tuple[Parent | None, Prompt | None, Proposal | None]] = []
        for index in range(request.n):
            parent = request.parents[index % len(request.parents)] if request.parents else None
            try:
                prompt = build_prompt(request, parent, self.config.prompt, self.count_tokens,
                                      budget)
            except Rejected as exc:
                slots.append((parent, None, rejected(_pid(parent), None, exc)))
                continue
            slots.append((parent, prompt, None))
        prompts = [p for _, p, done in slots if done is None and p is not None]
        calls = iter(self.complete(prompts, request.seed) if prompts else [])
        seen = set(request.seen)
        out = []
        for parent, _prompt, done in slots:
            if done is not None:
                out.append(done)
                continue
            call = next(calls)
            if call.error:
                out.append(rejected(_pid(parent), call, _failed(call.error)))
                continue
            base = parent.files if parent else seed_files
            limits = self.config.validation
            if request.from_spec:  # a first draft is not a rewrite of the reference it never saw
                limits = limits.model_copy(update={"min_rewrite_fraction": 0.0})
            proposal = proposal_from_answer(
                call.response, parent_id=_pid(parent), parent=base, seed_files=seed_files,
                editable=editable, seen=seen, call=call, limits=limits,
            )
            proposal = _refuse_cut(proposal, call)
            if proposal.valid and proposal.files is not None:
                seen.add(variant_hash(proposal.files))
            out.append(proposal)
        return out


def _failed(error: str) -> Rejected:
    if error.startswith(CONTEXT_ERROR):
        return Rejected(Reason.CONTEXT, error[len(CONTEXT_ERROR):])
    return Rejected(Reason.GENERATION_ERROR, error)


def _refuse_cut(proposal: Proposal, call: GenerationCall) -> Proposal:
    """An answer the backend cut at its token limit (``finish_reason == "length"``) is refused
    as ``truncated``, unless the parser already judged it with that in mind: it reads
    ``call.finish_reason`` and says so in a note that names the cut (it may keep the complete
    blocks of a cut answer)."""
    if call.finish_reason != "length" or not proposal.valid:
        return proposal
    if any("length" in note or "cut" in note for note in proposal.notes):
        return proposal
    cut = Rejected(Reason.TRUNCATED, f"the answer was cut at the token limit "
                                     f"({call.tokens_out} tokens; raise "
                                     "generator.max_new_tokens)")
    return rejected(proposal.parent_id, call, cut)


def _pid(parent: Parent | None) -> str | None:
    return parent.variant_id if parent else None

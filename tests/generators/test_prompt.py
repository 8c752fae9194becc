"""Prompts: what goes in, and how they are fitted to a context without cutting the source."""

from __future__ import annotations

from pathlib import Path

import pytest

from orchestrator.generators.base import Failure, GenerationRequest, Parent, Reason, Rejected
from orchestrator.generators.config import PromptConfig
from orchestrator.generators.prompt import build_prompt
from orchestrator.program import Program

ROOT = Path(__file__).resolve().parents[2]


def _chars(text: str) -> int:
    return len(text)


def _request(program, failures=3, history=6):
    parent = Parent("v9", program.source_files(), {"val_bpb": 1.25},
                    tuple((f"a{i}", 2.0 - i / 10 if i % 3 else None) for i in range(history)))
    tails = tuple(
        Failure(f"f{i}", "crash", "\n".join(f"frame {k}" for k in range(40)) + f"\nValueError: {i}")
        for i in range(failures)
    )
    return GenerationRequest(program, (parent,), tails), parent


def test_prompt_holds_goal_metric_history_failures_source_and_format(toy):
    request, parent = _request(toy)
    prompt = build_prompt(request, parent, PromptConfig(error_tail_lines=5), _chars, 100_000)
    text = prompt.text
    assert "A tiny byte-level language model" in text
    assert "val_bpb (minimize; lower is better)" in text and "v9 (val_bpb=1.25)" in text
    assert "- a1: 1.9" in text and "- a0: failed" in text
    assert "ValueError: 2" in text and "frame 39" in text and "frame 30" not in text
    for path, source in toy.source_files().items():
        assert f"{path}\n```python\n{source}```" in text
    assert "<<<<<<< SEARCH" in text and ">>>>>>> REPLACE" in text
    assert prompt.messages[0]["role"] == "system" and prompt.dropped == []


def test_fitting_drops_failures_then_history_never_the_source(toy):
    request, parent = _request(toy)
    full = build_prompt(request, parent, PromptConfig(), _chars, 100_000).text
    source_only = build_prompt(GenerationRequest(toy, (Parent("v9", parent.files),)),
                               Parent("v9", parent.files), PromptConfig(), _chars, 100_000).text
    budget = (len(full) + len(source_only)) // 2
    fitted = build_prompt(request, parent, PromptConfig(), _chars, budget)
    assert len(fitted.text) <= budget
    assert fitted.dropped and fitted.dropped[0].startswith("failures dropped")
    for source in toy.source_files().values():
        assert source in fitted.text
    tight = build_prompt(request, parent, PromptConfig(), _chars, len(source_only) + 40)
    assert "Recent attempts" not in tight.text and "Ancestors" not in tight.text
    assert any(d.startswith("ancestors dropped") for d in tight.dropped)


def test_source_that_cannot_fit_is_a_context_rejection(toy):
    request, parent = _request(toy)
    with pytest.raises(Rejected) as exc:
        build_prompt(request, parent, PromptConfig(), _chars, 500)
    assert exc.value.reason == Reason.CONTEXT


def test_no_parent_asks_for_whole_files_from_the_task_spec():
    program = Program.load(ROOT / "programs" / "tasks" / "digits")
    request = GenerationRequest(program, ())
    prompt = build_prompt(request, None, PromptConfig(), _chars, 100_000)
    assert "Classify 8x8 grayscale images" in prompt.text  # task.toml, not program.toml
    assert "digits.npz" in prompt.text and "SELFPROG_OUT/model.pt" in prompt.text
    assert "```python train.py" in prompt.text and "<<<<<<< SEARCH" not in prompt.text
    assert "The skeleton to complete" in prompt.text

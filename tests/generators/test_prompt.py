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


def _rich(program, **over):
    """A request with everything the loop hands over: curve, costs, tried changes with their
    outcome, a crash with its traceback, a rejected answer, the run's terms, a focus."""
    from orchestrator.generators.base import Profile, RunFacts, Tried

    curve = tuple((step, (("loss", 5.0 - step / 1000), ("lr", 3e-4)))
                  for step in range(0, 800, 100))
    profile = Profile(curve=curve, metrics=(("params", 81234.0), ("val_bpb", 2.91)),
                      train_s=58.2, peak_memory_bytes=700 * 1024**2)
    parent = Parent("v9", program.source_files(), {"val_bpb": 2.91}, (("a0", 3.1),),
                    profile=profile)
    tried = (Tried("t1", "-N_LAYER = 4\n+N_LAYER = 12\n", 3.4, "worse"),
             Tried("t2", "-LR = 1e-3\n+LR = 3e-3\n", None, "timeout"))
    failures = (Failure("c1", "crash", "train: exited with code 1", diff="-x = 1\n+x = y\n",
                        log_tail="Traceback (most recent call last):\n  File \"train.py\", "
                        "line 3\nNameError: name 'y' is not defined"),
                Failure("answer 7", "rejected before running", "no_match: SEARCH text found "
                        "nowhere in train.py"))
    facts = RunFacts(budget_s=60, budget_counts="wall-clock seconds that train.py measures",
                     memory_bytes=4 * 1024**3, cpus=2, gpus=0, noise=0.07)
    fields = dict(failures=failures, tried=tried, facts=facts, focus="capacity")
    fields.update(over)
    return GenerationRequest(program, (parent,), **fields), parent


def test_prompt_carries_curve_costs_terms_tried_changes_tracebacks_and_rejections(toy):
    request, parent = _rich(toy)
    text = build_prompt(request, parent, PromptConfig(), _chars, 100_000).text
    assert "700: loss=4.3, lr=0.0003" in text and "0: loss=5" in text
    assert "params=81234" in text and "training took 58.2 s" in text
    assert "peak memory 700 MiB of 4096 MiB" in text
    assert "Training budget: 60 s" in text and "2 CPU cores" in text
    assert "Noise floor of the metric: 0.07" in text
    assert "t1 (worse, 3.4)" in text and "+N_LAYER = 12" in text and "t2 (timeout)" in text
    assert "Do not propose them again" in text
    assert "NameError: name 'y' is not defined" in text and "+x = y" in text
    assert "no_match: SEARCH text found nowhere" in text
    assert "Focus of this proposal: change the model's capacity" in text


def test_two_proposals_from_one_parent_get_different_prompts(toy):
    a, parent = _rich(toy, focus="architecture")
    b, _ = _rich(toy, focus="learning dynamics")
    first = build_prompt(a, parent, PromptConfig(), _chars, 100_000).text
    second = build_prompt(b, parent, PromptConfig(), _chars, 100_000).text
    assert first != second and "architecture" in first and "optimizer" in second


def test_fitting_drops_failures_then_tried_changes_then_the_curve(toy):
    request, parent = _rich(toy)
    full = build_prompt(request, parent, PromptConfig(), _chars, 100_000).text
    steps = []
    for cut in range(0, len(full), 40):
        fitted = build_prompt(request, parent, PromptConfig(), _chars, len(full) - cut)
        if fitted.dropped and fitted.dropped not in steps:
            steps.append(fitted.dropped)
        if any(d.startswith("ancestors") for d in fitted.dropped):
            break
    kinds = [d.split(" dropped")[0] for d in steps[-1]]
    assert kinds == ["failures", "tried changes", "the training curve", "ancestors"]


def test_from_spec_prompt_never_shows_the_shipped_reference():
    program = Program.load(ROOT / "programs" / "tasks" / "digits")
    request = GenerationRequest(program, (), from_spec=True)
    text = build_prompt(request, None, PromptConfig(), _chars, 100_000).text
    assert "Classify 8x8 grayscale images" in text and "SELFPROG_TIME_BUDGET_S" in text
    reference = program.source_files()["train.py"]
    assert "The skeleton to complete" not in text
    assert "def build_model" not in text and reference[:200] not in text
    assert "```python train.py" in text

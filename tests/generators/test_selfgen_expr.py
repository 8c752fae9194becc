"""``self`` code completions as expression holes: the model rewrites one arithmetic value, under
a grammar that makes an invalid variant impossible rather than rejected."""

from __future__ import annotations

import difflib
from pathlib import Path

import pytest

from orchestrator.completer import CompletionRequest, ScoreRequest
from orchestrator.errors import CodeLMError
from orchestrator.generators.base import GenerationRequest, Parent
from orchestrator.generators.config import CodeLMConfig, GeneratorConfig
from orchestrator.generators.exprholes import sites
from orchestrator.generators.selfgen import SelfGenerator
from orchestrator.program import Program

ROOT = Path(__file__).resolve().parents[2]
CODELM = ROOT / "programs" / "codelm" / "train.py"

SOURCE = '''import math

import torch

RATE = 0.5
NAME = "x"


def schedule(progress, model):
    """Rate at a point of training."""
    rest = 1.0 - progress
    out = model(torch.zeros(3))
    return RATE * max(0.1, rest)  # the hole
'''


def test_sites_are_arithmetic_values_with_the_names_defined_where_they_are():
    (rest, ret) = sites(SOURCE)  # the tensor line is not a site
    assert rest.text == "1.0 - progress" and ret.text == "RATE * max(0.1, rest)"
    assert SOURCE.split("\n")[ret.line][ret.start:ret.end] == ret.text
    # the function's numeric parameter and earlier local, numeric constants, functions with
    # their arity; not the module it was passed, not the string constant, not torch
    assert set(ret.names) == {"RATE", "max(2+", "rest", "progress", "min(2+", "abs(1"}


def test_the_seed_programs_sites_are_its_schedules_and_averages_not_its_tensor_code():
    found = {s.text for s in sites(CODELM.read_text())}
    assert "LEARNING_RATE * max(0.1, 1.0 - rest)" in found
    assert "value if loss_ema is None else 0.95 * loss_ema + 0.05 * value" in found
    assert not any("view" in t or "nn." in t or "torch" in t for t in found)


class Writes:
    """A model that writes given expressions and scores a continuation by a table."""

    context = 2048

    def __init__(self, samples: list[str], table: dict[str, float] | None = None):
        self.samples, self.table = samples, table or {}
        self.requests: list[CompletionRequest] = []

    def complete_many(self, requests: list[CompletionRequest]) -> list[str | CodeLMError]:
        self.requests += requests
        return [self.samples[i % len(self.samples)] for i in range(len(requests))]

    def score_many(self, requests: list[ScoreRequest]) -> list[list[float] | CodeLMError]:
        return [[next((v for k, v in self.table.items() if c.startswith(k)), -50.0)
                 for c in r.continuations] for r in requests]


def completions(k: int = 3) -> GeneratorConfig:
    return GeneratorConfig(codelm=CodeLMConfig(hole_fraction=0.0, candidates=k))


def propose(program: Program, lm: Writes, source: str = SOURCE, seed: int = 1):
    gen = SelfGenerator(completions(len(lm.samples)), lm, load=lambda f: lm)
    (p,) = gen.propose(GenerationRequest(program, (Parent("p", {"train.py": source}),),
                                         seed=seed))
    return p


def test_the_likeliest_new_value_is_proposed_under_the_expression_constraint(single):
    lm = Writes(["rest * 2", "RATE", "progress + 1"], {"rest * 2": -1.0, "RATE": -2.0})
    p = propose(single, lm)
    assert p.valid, p.rejection
    assert {r.constraint for r in lm.requests} == {"python-expr"}
    site = next(s for s in sites(SOURCE) if SOURCE.split("\n")[s.line][:s.start]
                == lm.requests[0].prompt.split("\n")[-1])
    assert set(lm.requests[0].names) == set(site.names)
    changed = [line for line in difflib.ndiff(SOURCE.split("\n"), p.files["train.py"].split("\n"))
               if line.startswith("+ ")]
    assert len(changed) == 1 and "rest * 2" in changed[0]
    assert "likeliest of 3 valid samples" in p.notes[0]


def test_a_value_written_back_or_no_value_is_no_edit_never_a_broken_variant(single):
    one = "RATE = 0.5\n\n\ndef f(progress):\n    return RATE * max(0.1, progress)\n"
    assert len(sites(one)) == 1
    for samples in (["RATE * max(0.1, progress)", "RATE*max(0.1,(progress))"], [""]):
        p = propose(single, Writes(samples), one)
        assert not p.valid and p.rejection.startswith("no_edit:"), p.rejection


@pytest.mark.slow
def test_any_model_writes_only_valid_variants_of_the_seed_program(tmp_path):
    """A random-weight model writes noise; under the grammar every sample is a variant that
    parses and names nothing undefined, or no sample at all."""
    from orchestrator.generators.inprocess import InProcessCompleter
    from orchestrator.generators.testing import export_tiny

    lm = InProcessCompleter.load(export_tiny(tmp_path / "m", seed=1, context=16), device="cpu")
    program = Program.load(ROOT / "programs" / "codelm")
    config = GeneratorConfig(temperature=1.0, codelm=CodeLMConfig(
        hole_fraction=0.0, candidates=2, max_new_bytes=32, context_bytes=64))
    gen = SelfGenerator(config, lm, load=lambda f: lm)
    out = gen.propose(GenerationRequest(program, (Parent("", program.source_files()),), n=5,
                                        seed=3))
    reasons = {p.rejection.split(":")[0] for p in out if not p.valid}
    assert reasons <= {"no_edit", "duplicate"}, [p.rejection for p in out]
    assert sum(p.valid for p in out) >= 3
    for p in out:
        if p.valid:
            compile(p.files["train.py"], "train.py", "exec")


def test_the_container_request_carries_the_names_and_a_malformed_list_costs_only_itself(
        tmp_path):
    import json
    from dataclasses import asdict

    from orchestrator.generators.testing import export_tiny
    from sandbox.codelm import _one, load

    request = CompletionRequest("x = ", 8, 0.8, 1, None, "python-expr", ("a", "max(2+"))
    assert json.loads(json.dumps(asdict(request)))["names"] == ["a", "max(2+"]  # as sent
    module, context = load(export_tiny(tmp_path / "m", context=16), "cpu")
    bad = _one(module, context, "cpu", {"prompt": "x = ", "max_new_bytes": 8,
                                        "constraint": "python-expr", "names": "a"})
    assert bad == {"error": "TypeError: 'names' must be a list of strings"}
    good = _one(module, context, "cpu", {**json.loads(json.dumps(asdict(request))),
                                         "temperature": 1.0})
    assert set(good) == {"text"}
    assert good["text"] == "" or compile(good["text"], "<v>", "eval")

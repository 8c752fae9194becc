"""``self``: an exported codelm completes a region of its own source; the result is validated."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

from orchestrator.completer import CompletionRequest, ScoreRequest
from orchestrator.errors import CodeLMError, ConfigError
from orchestrator.generators.auto import make_generator
from orchestrator.generators.base import GenerationRequest, Parent, Reason
from orchestrator.generators.config import CodeLMConfig, GeneratorConfig
from orchestrator.generators.searchspace import find_settings
from orchestrator.generators.selfgen import (
    SelfGenerator,
    hole_values,
    regions,
    splice,
    statement_start,
)
from orchestrator.program import Program, variant_hash

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.slow
def test_exported_codelm_samples_recorded_proposals(tmp_path):
    from orchestrator.generators.inprocess import InProcessCompleter
    from orchestrator.generators.testing import export_tiny

    folder = export_tiny(tmp_path / "codelm")
    program = Program.load(ROOT / "programs" / "codelm")
    # In-process (a model made here is trusted); test_selfgen_sandboxed.py samples in a container.
    config = GeneratorConfig(backend="self", codelm=CodeLMConfig(model=str(folder),
                                                                 max_new_bytes=24, sandboxed=False))
    gen = make_generator(config)
    assert isinstance(gen, SelfGenerator) and isinstance(gen.lm, InProcessCompleter)
    parent = Parent("seed", program.source_files())
    proposals = gen.propose(GenerationRequest(program, (parent,), n=3, seed=2))
    assert len(proposals) == 3
    for p in proposals:
        assert p.call is not None and p.call.backend == "self"
        assert p.call.model == str(folder) and p.call.generator == ""
        assert p.call.kind in ("hole", "completion")
        assert p.call.prompt in program.source_files()["train.py"]
        assert p.call.tokens_out > 0
        if p.call.kind == "hole":  # valid by construction: a declared literal in range
            assert p.valid, p.rejection
            assert p.call.response in p.files["train.py"]
        assert p.valid or p.rejection.split(":")[0] in set(Reason)
    again = gen.propose(GenerationRequest(program, (parent,), n=3, seed=2))
    assert [p.call.response for p in again] == [p.call.response for p in proposals]


class Script:
    """A completer that returns a fixed text (to test what is done with a sample)."""

    context = 2048

    def __init__(self, text: str):
        self.text = text
        self.prompts: list[str] = []

    def complete_many(self, requests: list[CompletionRequest]) -> list[str | CodeLMError]:
        self.prompts += [r.prompt for r in requests]
        return [self.text[: r.max_new_bytes] for r in requests]


def scripted(text: str, config: GeneratorConfig | None = None) -> SelfGenerator:
    """A ``self`` generator whose model always writes ``text`` (and whose loader makes another
    such model, writing the folder's name)."""
    config = config or GeneratorConfig(codelm=CodeLMConfig(completion="block"))
    return SelfGenerator(config, Script(text), load=lambda f: Script(str(f)))


SOURCE = '''X = 1


def f(a):
    """Add."""
    b = a + 1
    c = b * 2
    return c


def g():
    return f(X)
'''


def test_regions_are_bodies_of_top_level_blocks_after_their_docstring():
    assert regions(SOURCE) == [(5, 8)]  # g's one-line body is too short to resample


def test_sample_replaces_the_rest_of_the_block_and_stops_at_top_level():
    new = splice(SOURCE, 6, 8, "    c = b * 3\n    return c + 1\n\n\ndef junk():\n", True)
    assert new == SOURCE.replace("    c = b * 2\n    return c\n", "    c = b * 3\n"
                                 "    return c + 1\n")


def test_cut_off_sample_loses_its_partial_last_line(single):
    gen = scripted("    return a * 5\n    retu",
                   GeneratorConfig(codelm=CodeLMConfig(max_new_bytes=22, completion="block")))
    (p,) = gen.propose(GenerationRequest(single, (Parent("p", {"train.py": SOURCE}),), seed=0))
    assert p.valid, p.rejection
    assert "    return a * 5\n" in p.files["train.py"] and "retu\n" not in p.files["train.py"]
    assert p.files["train.py"].endswith("def g():\n    return f(X)\n")
    assert gen.lm.prompts[0].startswith("X = 1\n") and "def f(a):" in gen.lm.prompts[0]


def test_sample_with_no_line_of_the_block_is_no_edit(single):
    gen = scripted("garbage at top level\n")
    (p,) = gen.propose(GenerationRequest(single, (Parent("p", {"train.py": SOURCE}),)))
    assert p.rejection.startswith("no_edit:")


def test_broken_sample_is_a_syntax_rejection(single):
    gen = scripted("    return (c\n")
    (p,) = gen.propose(GenerationRequest(single, (Parent("p", {"train.py": SOURCE}),)))
    assert p.rejection.startswith("syntax:")


def test_sample_using_a_name_defined_nowhere_is_rejected_with_the_name(single):
    gen = scripted("    return a * scale_factor\n")
    (p,) = gen.propose(GenerationRequest(single, (Parent("p", {"train.py": SOURCE}),)))
    assert p.rejection == "undefined: train.py uses scale_factor, defined nowhere"


def test_missing_export_is_a_config_error(tmp_path):
    with pytest.raises(ConfigError):
        make_generator(GeneratorConfig(backend="self", codelm=CodeLMConfig(model=str(tmp_path))))


def test_missing_export_is_a_config_error_in_process_too(tmp_path):
    with pytest.raises(ConfigError):
        make_generator(GeneratorConfig(backend="self", codelm=CodeLMConfig(model=str(tmp_path),
                                                                            sandboxed=False)))


class Failing(Script):
    """A completer whose whole batch fails (a crashed or timed-out sampling container)."""

    def complete_many(self, requests: list[CompletionRequest]) -> list[str | CodeLMError]:
        raise CodeLMError("the sampling container ran past its 4 s deadline")


def test_a_batch_that_fails_as_a_whole_is_each_proposals_generation_error(single):
    gen = SelfGenerator(GeneratorConfig(), Failing(""), load=Failing)
    proposals = gen.propose(GenerationRequest(single, (Parent("p", {"train.py": SOURCE}),), n=3))
    assert [p.rejection.split(":")[0] for p in proposals] == [Reason.GENERATION_ERROR] * 3
    assert all(p.call is not None and p.call.error == "CodeLMError: the sampling container ran "
               "past its 4 s deadline" for p in proposals)


class OneBad(Script):
    """A completer that fails on its batch's first request only."""

    def complete_many(self, requests: list[CompletionRequest]) -> list[str | CodeLMError]:
        return [CodeLMError("the model failed while sampling"),
                *super().complete_many(requests[1:])]


def test_a_request_the_model_fails_on_costs_only_its_own_proposal(single):
    config = GeneratorConfig(codelm=CodeLMConfig(candidates=1, completion="block"))
    gen = SelfGenerator(config, OneBad("    return a * 7\n"), load=OneBad)
    first, second = gen.propose(GenerationRequest(single, (Parent("p", {"train.py": SOURCE}),),
                                                  n=2))
    assert first.rejection == "generation_error: CodeLMError: the model failed while sampling"
    assert second.valid, second.rejection


def test_use_loads_the_new_model_through_the_factorys_loader(tmp_path):
    gen = scripted("x")
    gen.use(str(tmp_path / "best"))
    assert isinstance(gen.lm, Script) and gen.lm.text == str(tmp_path / "best")
    assert gen.model_name == str(tmp_path / "best")

    def refuse(folder):
        raise ConfigError(f"{folder} holds no exported codelm")

    kept = gen.lm
    gen.load = refuse
    with pytest.raises(ConfigError, match="holds no exported codelm"):
        gen.use(tmp_path / "broken")
    assert gen.lm is kept and gen.model_name == str(tmp_path / "best")


def test_the_self_generator_imports_neither_docker_nor_torch():
    """Not even lazily: the factory hands it its completer, so a variant's model is never
    loaded here by accident."""
    source = (ROOT / "orchestrator" / "generators" / "selfgen.py").read_text()
    names = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            names |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom):
            names.add(node.module or "")
    forbidden = ("docker", "torch", "transformers", "orchestrator.containers",
                 "orchestrator.generators.inprocess")
    assert not {n for n in names if any(n == f or n.startswith(f + ".") for f in forbidden)}
    code = ("import sys, orchestrator.generators.selfgen; "
            "print(sorted({m.split('.')[0] for m in sys.modules} & {'docker', 'torch'}))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          cwd=ROOT, check=True)
    assert done.stdout.strip() == "[]"


# --- setting holes and ranked completions -------------------------------------------------------

SETTINGS = '''LR = 1e-3  # search: log[1e-4, 1e-2]
DEPTH = 2  # search: int[1, 4]
ACT = "gelu"  # search: choice[gelu, relu, silu]
DROP = 0.1  # search: float[0, 0.3]


def f(a):
    """Add."""
    b = a + DEPTH
    c = b * LR
    return c
'''


class Scorer(Script):
    """A completer that writes ``text`` and scores a continuation by a fixed table (the first
    key it starts with), else by ``-10`` per byte; it records the score requests."""

    def __init__(self, text: str, table: dict[str, float] | None = None,
                 samples: list[str] | None = None):
        super().__init__(text)
        self.table = table or {}
        self.samples = samples
        self.scored: list[ScoreRequest] = []

    def complete_many(self, requests: list[CompletionRequest]) -> list[str | CodeLMError]:
        self.prompts += [r.prompt for r in requests]
        assert all(r.constraint == "python-block" for r in requests)
        if self.samples is None:
            return [self.text[: r.max_new_bytes] for r in requests]
        return [self.samples[i % len(self.samples)] for i in range(len(requests))]

    def score_many(self, requests: list[ScoreRequest]) -> list[list[float] | CodeLMError]:
        self.scored += requests
        return [[next((v for k, v in self.table.items() if c.startswith(k)), -10.0 * len(c))
                 for c in r.continuations] for r in requests]


def holes_only(**kw) -> GeneratorConfig:
    return GeneratorConfig(temperature=0, codelm=CodeLMConfig(hole_fraction=1.0, **kw))


def test_hole_values_are_the_declared_candidates_without_the_current_one():
    found = {s.name: s for s in find_settings("train.py", SETTINGS)}
    assert hole_values(found["ACT"], 12) == ["relu", "silu"]
    assert hole_values(found["DEPTH"], 12) == [1, 3, 4]
    logs = hole_values(found["LR"], 5)
    assert logs == [1e-4, 3.2e-4, 3.2e-3, 1e-2]  # log-spaced, two digits; 1e-3 is current
    floats = hole_values(found["DROP"], 4)
    assert floats == [0.0, 0.2, 0.3] and all(0 <= v <= 0.3 for v in floats)


def test_a_hole_is_filled_with_the_candidate_the_model_finds_likeliest(single):
    lm = Scorer("", {'"silu"': -1.0, '"relu"': -5.0, "3 ": -0.5})
    gen = SelfGenerator(holes_only(), lm, load=Scorer)
    parent = Parent("p", {"train.py": SETTINGS})
    proposals = gen.propose(GenerationRequest(single, (parent,), n=6, seed=3))
    assert all(p.valid for p in proposals), [p.rejection for p in proposals]
    for p in proposals:
        assert p.call.kind == "hole" and p.call.generator == ""
        changed = [a for a, b in zip(SETTINGS.split("\n"), p.files["train.py"].split("\n"),
                                     strict=True) if a != b]
        assert len(changed) == 1  # one literal, the rest of the file as it was
        ast.parse(p.files["train.py"])
    first: dict[str, str] = {}  # a later hole on the same setting takes the next likeliest
    for p in proposals:
        first.setdefault(p.notes[0].split(":")[1].split("=")[0].strip(), p.call.response)
    assert first.get("ACT", '"silu"') == '"silu"' and first.get("DEPTH", "3") == "3"
    assert len({variant_hash(p.files) for p in proposals}) == len(proposals)
    # the prompt is the source before the literal; the continuation ends the line
    req = lm.scored[0]
    assert SETTINGS.startswith(req.prompt) and all(c.endswith("\n") for c in req.continuations)


def test_hole_draws_follow_the_models_probabilities_at_temperature_one(single):
    lm = Scorer("", {'"silu"': -0.1, '"relu"': -3.0})
    config = GeneratorConfig(temperature=1.0, codelm=CodeLMConfig(hole_fraction=1.0))
    gen = SelfGenerator(config, lm, load=Scorer)
    parent = Parent("p", {"train.py": SETTINGS.split("\n\n\n")[0].replace("LR =", "lr =")
                          .replace("DEPTH =", "depth =").replace("DROP =", "drop =") + "\n"})
    picks = [p.call.response for s in range(60)
             for p in gen.propose(GenerationRequest(single, (parent,), n=1, seed=s))]
    assert set(picks) == {'"silu"', '"relu"'}
    assert picks.count('"silu"') > 45  # p = 1 / (1 + e^-2.9) = 0.95


def test_a_hole_never_repeats_a_variant_already_seen(single):
    lm = Scorer("")
    gen = SelfGenerator(holes_only(), lm, load=Scorer)
    parent = Parent("p", {"train.py": 'ACT = "gelu"  # search: choice[gelu, relu]\n'})
    (first,) = gen.propose(GenerationRequest(single, (parent,), seed=1))
    assert first.valid and '"relu"' in first.files["train.py"]
    seen = (variant_hash(first.files),)
    (again,) = gen.propose(GenerationRequest(single, (parent,), seed=2, seen=seen))
    assert again.rejection.startswith("no_edit:")


def test_scoring_that_fails_is_the_holes_generation_error_not_a_crash(single):
    class Broken(Scorer):
        def score_many(self, requests):
            raise CodeLMError("the scoring container exited 137")

    gen = SelfGenerator(holes_only(), Broken(""), load=Broken)
    (p,) = gen.propose(GenerationRequest(single, (Parent("p", {"train.py": SETTINGS}),)))
    assert p.rejection == "generation_error: CodeLMError: the scoring container exited 137"
    assert p.call.kind == "hole" and p.call.error


def test_the_likeliest_valid_completion_is_proposed_and_invalid_ones_never_are(single):
    samples = ["    return a * 5\n", "    return a * undefined_thing\n",
               "    return a * 7 + 1\n", "    return (a\n"]
    lm = Scorer("", {"    return a * 7 + 1": -1.0, "    return a * 5": -30.0}, samples)
    config = GeneratorConfig(codelm=CodeLMConfig(hole_fraction=0.0, completion="block",
                                                 candidates=4))
    gen = SelfGenerator(config, lm, load=Scorer)
    (p,) = gen.propose(GenerationRequest(single, (Parent("p", {"train.py": SOURCE}),), seed=0))
    assert p.valid and p.call.kind == "completion"
    assert "return a * 7 + 1" in p.files["train.py"] and "likeliest of 2" in p.notes[0]
    assert len(lm.scored) == 1 and len(lm.scored[0].continuations) == 2


def test_no_valid_completion_is_the_first_samples_rejection(single):
    lm = Scorer("", samples=["    return a * nowhere\n"])
    config = GeneratorConfig(codelm=CodeLMConfig(hole_fraction=0.0, completion="block",
                                                 candidates=2))
    (p,) = SelfGenerator(config, lm, load=Scorer).propose(
        GenerationRequest(single, (Parent("p", {"train.py": SOURCE}),)))
    assert p.rejection == "undefined: train.py uses nowhere, defined nowhere"


def test_a_sample_cut_inside_a_bracket_keeps_the_lines_before_it():
    new = splice(SOURCE, 6, 8, "    c = b * 3\n    return max(c,\n", True)
    assert "    c = b * 3\n\n\ndef g():" in new
    ast.parse(new)


def test_the_model_of_a_crowned_variant_is_recorded_as_the_writer(single, tmp_path):
    gen = SelfGenerator(holes_only(), Scorer(""), load=lambda f: Scorer(""))
    gen.use(tmp_path / "run" / "variants" / "0007-ab12cd34" / "eval-1" / "artifacts")
    assert gen.generator_id == "ab12cd34"
    (p,) = gen.propose(GenerationRequest(single, (Parent("p", {"train.py": SETTINGS}),)))
    assert p.call.generator == "ab12cd34"
    gen.use(tmp_path / "elsewhere" / "artifacts")
    assert gen.generator_id == ""


def test_two_completions_of_a_batch_never_propose_the_same_variant(single):
    lm = Scorer("", samples=["    return a * 9\n"])
    config = GeneratorConfig(codelm=CodeLMConfig(hole_fraction=0.0, completion="block",
                                                 candidates=1))
    first, second = SelfGenerator(config, lm, load=Scorer).propose(
        GenerationRequest(single, (Parent("p", {"train.py": SOURCE}),), n=2, seed=4))
    if first.files is not None and second.files is not None:
        assert variant_hash(first.files) != variant_hash(second.files)
    assert first.valid or second.valid
    for p in (first, second):
        assert p.valid or p.rejection.startswith("duplicate:")


def test_a_long_block_keeps_its_first_line_in_the_prompt_for_the_parse_check(single):
    body = "".join(f"    v{i} = a + {i}\n" for i in range(200))
    source = f"X = 1\n\n\n@staticmethod\ndef f(a):\n{body}    return a\n"
    lm = Scorer("", samples=["    return a * 2\n"])
    config = GeneratorConfig(codelm=CodeLMConfig(hole_fraction=0.0, completion="block",
                                                 candidates=1,
                                                 context_bytes=256))
    SelfGenerator(config, lm, load=Scorer).propose(
        GenerationRequest(single, (Parent("p", {"train.py": source}),), seed=0))
    (prompt,) = lm.prompts
    assert prompt.startswith("@staticmethod\ndef f(a):\n") and source.startswith("X = 1")
    assert statement_start(source, 5) == 3

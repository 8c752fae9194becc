"""``self``: an exported codelm completes a region of its own source; the result is validated."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

from orchestrator.completer import CompletionRequest
from orchestrator.errors import CodeLMError, ConfigError
from orchestrator.generators.auto import make_generator
from orchestrator.generators.base import GenerationRequest, Parent, Reason
from orchestrator.generators.config import CodeLMConfig, GeneratorConfig
from orchestrator.generators.selfgen import SelfGenerator, regions, splice
from orchestrator.program import Program

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
    return SelfGenerator(config or GeneratorConfig(), Script(text), load=lambda f: Script(str(f)))


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
                   GeneratorConfig(codelm=CodeLMConfig(max_new_bytes=22)))
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
    config = GeneratorConfig(codelm=CodeLMConfig(candidates=1))
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

"""``self``: an exported codelm completes a region of its own source; the result is validated."""

from __future__ import annotations

from pathlib import Path

import pytest

from orchestrator.errors import ConfigError
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
    gen = SelfGenerator(config)
    assert isinstance(gen.lm, InProcessCompleter)
    parent = Parent("seed", program.source_files())
    proposals = gen.propose(GenerationRequest(program, (parent,), n=3, seed=2))
    assert len(proposals) == 3
    for p in proposals:
        assert p.call is not None and p.call.backend == "self"
        assert p.call.model == str(folder)
        assert program.source_files()["train.py"].startswith(p.call.prompt[:50]) or \
            p.call.prompt in program.source_files()["train.py"]
        assert 0 < p.call.tokens_out <= 24 * 4  # bytes; a replaced byte decodes to 3
        assert p.valid or p.rejection.split(":")[0] in set(Reason)
    again = gen.propose(GenerationRequest(program, (parent,), n=3, seed=2))
    assert [p.call.response for p in again] == [p.call.response for p in proposals]


class Script:
    """A completer that returns a fixed text (to test what is done with a sample)."""

    def __init__(self, text: str):
        self.text = text
        self.prompts: list[str] = []

    def complete(self, prompt, max_new_bytes, temperature=0.8, seed=0, stop=None):
        self.prompts.append(prompt)
        return self.text[:max_new_bytes]


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
    gen = SelfGenerator(GeneratorConfig(codelm=CodeLMConfig(max_new_bytes=22)),
                        lm=Script("    return c * 5\n    retu"))
    (p,) = gen.propose(GenerationRequest(single, (Parent("p", {"train.py": SOURCE}),), seed=0))
    assert p.valid, p.rejection
    assert "    return c * 5\n" in p.files["train.py"] and "retu\n" not in p.files["train.py"]
    assert p.files["train.py"].endswith("def g():\n    return f(X)\n")
    assert gen.lm.prompts[0].startswith("X = 1\n") and "def f(a):" in gen.lm.prompts[0]


def test_sample_with_no_line_of_the_block_is_no_edit(single):
    gen = SelfGenerator(GeneratorConfig(), lm=Script("garbage at top level\n"))
    (p,) = gen.propose(GenerationRequest(single, (Parent("p", {"train.py": SOURCE}),)))
    assert p.rejection.startswith("no_edit:")


def test_broken_sample_is_a_syntax_rejection(single):
    gen = SelfGenerator(GeneratorConfig(), lm=Script("    return (c\n"))
    (p,) = gen.propose(GenerationRequest(single, (Parent("p", {"train.py": SOURCE}),)))
    assert p.rejection.startswith("syntax:")


def test_missing_export_is_a_config_error(tmp_path):
    with pytest.raises(ConfigError):
        SelfGenerator(GeneratorConfig(codelm=CodeLMConfig(model=str(tmp_path))))
    with pytest.raises(ConfigError):
        SelfGenerator(GeneratorConfig(codelm=CodeLMConfig(model=str(tmp_path), sandboxed=False)))

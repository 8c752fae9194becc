"""``mutate``: valid, distinct, in-range, reproducible variants that keep the file's formatting."""

from __future__ import annotations

from pathlib import Path

import pytest

from orchestrator.generators.base import GenerationRequest, Parent
from orchestrator.generators.config import MutateConfig
from orchestrator.generators.mutate import MutateGenerator
from orchestrator.generators.searchspace import find_settings, render
from orchestrator.program import Program, variant_hash

ROOT = Path(__file__).resolve().parents[2]


def _in_range(files: dict[str, str]) -> None:
    for path, text in files.items():
        for s in find_settings(path, text):
            if s.kind == "choice":
                assert s.value in s.args, f"{s.name}={s.value!r} not in {s.args}"
            else:
                assert s.args[0] <= s.value <= s.args[1], f"{s.name}={s.value} out of {s.args}"
                if s.kind == "int":
                    assert isinstance(s.value, int)


def test_codelm_gets_100_valid_distinct_variants_out_of_100():
    program = Program.load(ROOT / "programs" / "codelm")
    seed_files = program.source_files()
    parent = Parent("seed", seed_files)
    proposals = MutateGenerator().propose(GenerationRequest(program, (parent,), n=100, seed=7))
    assert [p.rejection for p in proposals if not p.valid] == []
    hashes = {variant_hash(p.files) for p in proposals}
    assert len(hashes) == 100 and variant_hash(seed_files) not in hashes
    for p in proposals:
        _in_range(p.files)
        changed = [ln for ln in p.diff_parent.splitlines() if ln.startswith(("-", "+"))
                   and not ln.startswith(("---", "+++"))]
        # Only constant lines change, and each keeps its declaration comment.
        assert changed and all("# search:" in ln for ln in changed), p.diff_parent


def test_same_seed_same_variants_other_seed_other_variants(toy):
    gen = MutateGenerator()
    parent = Parent("p", toy.source_files())
    a = gen.propose(GenerationRequest(toy, (parent,), n=20, seed=3))
    b = gen.propose(GenerationRequest(toy, (parent,), n=20, seed=3))
    c = gen.propose(GenerationRequest(toy, (parent,), n=20, seed=4))
    assert [p.files for p in a] == [p.files for p in b]
    assert [p.call.response for p in a] == [p.call.response for p in b]
    assert [p.files for p in a] != [p.files for p in c]


def test_seen_sources_are_never_proposed_again(toy):
    gen = MutateGenerator()
    parent = Parent("p", toy.source_files())
    first = gen.propose(GenerationRequest(toy, (parent,), n=30, seed=1))
    seen = frozenset(variant_hash(p.files) for p in first)
    second = gen.propose(GenerationRequest(toy, (parent,), n=30, seed=1, seen=seen))
    assert all(p.valid for p in second)
    assert not seen & {variant_hash(p.files) for p in second}


def test_no_parent_starts_from_the_task_skeleton():
    program = Program.load(ROOT / "programs" / "tasks" / "digits")
    proposals = MutateGenerator().propose(GenerationRequest(program, (), n=5, seed=0))
    assert all(p.valid and p.parent_id is None for p in proposals)
    assert all(p.diff_parent == p.diff_seed for p in proposals)


def test_undeclared_constants_stay_fixed_unless_asked(toy):
    parent = Parent("p", toy.source_files())
    plain = MutateGenerator().propose(GenerationRequest(toy, (parent,), n=40, seed=2))
    assert not any("VOCAB_SIZE" in p.call.response for p in plain)
    bold = MutateGenerator(MutateConfig(undeclared=True))
    moved = bold.propose(GenerationRequest(toy, (parent,), n=40, seed=2))
    assert any("VOCAB_SIZE" in p.call.response or "CONTEXT" in p.call.response for p in moved)


def test_program_without_declarations_is_rejected_as_exhausted(single):
    files = {"train.py": "X = 1\n\nprint(X)\n"}
    proposals = MutateGenerator().propose(GenerationRequest(single, (Parent("p", files),), n=2))
    assert [p.rejection.split(":")[0] for p in proposals] == ["exhausted", "exhausted"]


def test_tiny_space_runs_out_instead_of_repeating(single):
    files = {"train.py": 'ACT = "relu"  # search: choice[relu, gelu]\n'}
    gen = MutateGenerator(MutateConfig(attempts=20))
    proposals = gen.propose(GenerationRequest(single, (Parent("p", files),), n=3))
    assert [p.valid for p in proposals] == [True, False, False]
    assert proposals[0].files["train.py"] == 'ACT = "gelu"  # search: choice[relu, gelu]\n'


@pytest.mark.parametrize(
    ("line", "value", "want"),
    [
        ("LR = 1e-3  # search: log[1e-4, 3e-2]", 0.0021, "LR = 2.1e-3  # search: log[1e-4, 3e-2]"),
        ("LR = 0.001  # search: log[1e-4, 3e-2]", 0.0021, "LR = 0.0021  # search: log[1e-4, 3e-2]"),
        ("A = 'gelu'  # search: choice[gelu, relu]", "relu",
         "A = 'relu'  # search: choice[gelu, relu]"),
        ("N = 2  # search: int[1, 6]", 5, "N = 5  # search: int[1, 6]"),
        ("W = 0  # search: float[0, 0.3]", 0.25, "W = 0.25  # search: float[0, 0.3]"),
    ],
)
def test_new_literal_keeps_the_line_and_its_notation(line, value, want):
    (setting,) = find_settings("t.py", line + "\n")
    literal = render(setting, value)
    assert line[: setting.start] + literal + line[setting.end :] == want


def test_a_numeric_range_on_a_string_is_no_setting_and_cannot_crash_mutate(single):
    text = 'MODE = "fast"  # search: log[1e-4, 1e-2]\nLR = 1e-3  # search: log[1e-4, 1e-2]\n'
    assert [s.name for s in find_settings("train.py", text)] == ["LR"]
    proposals = MutateGenerator().propose(
        GenerationRequest(single, (Parent("p", {"train.py": text}),), n=20, seed=0))
    assert all(p.valid for p in proposals)
    assert all('MODE = "fast"' in p.files["train.py"] for p in proposals)

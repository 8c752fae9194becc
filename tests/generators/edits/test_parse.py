"""The edit parser and applier against a corpus of realistic, messy model answers."""

from __future__ import annotations

import tomllib
from pathlib import Path

import pytest

from orchestrator.generators.base import GenerationCall, Rejected
from orchestrator.generators.edits.apply import apply_block
from orchestrator.generators.edits.parse import Block, parse_edits
from orchestrator.generators.edits.validate import proposal_from_answer

CORPUS = Path(__file__).parents[1] / "corpus"
EXPECTED = tomllib.loads((CORPUS / "expected.toml").read_text())


def test_corpus_is_complete():
    files = sorted(p.name for p in CORPUS.glob("*.txt"))
    assert len(files) >= 20
    assert files == sorted(EXPECTED), "every answer in the corpus has an expectation"


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_corpus_answer(name, toy, single):
    want = EXPECTED[name]
    program = single if want.get("program") == "single" else toy
    parent = program.source_files()
    answer = (CORPUS / name).read_bytes().decode()
    call = GenerationCall("openai", "m", "p", answer, finish_reason=want.get("finish_reason"))
    proposal = proposal_from_answer(
        answer, parent_id="p0", parent=parent, seed_files=parent,
        editable=program.manifest.program.editable, seen=frozenset(), call=call,
    )
    if want["outcome"] == "valid":
        assert proposal.valid, proposal.rejection
        assert proposal.diff_parent.startswith("--- a/")
        for path, lines in want.get("contains", {}).items():
            body = proposal.files[path].split("\n")
            for line in lines:
                assert line in body, f"{path} lacks {line!r}"
        for path, lines in want.get("absent", {}).items():
            for line in lines:
                assert line not in proposal.files[path], f"{path} still has {line!r}"
    else:
        assert not proposal.valid and proposal.files is None
        assert proposal.rejection.split(":")[0] == want["outcome"], proposal.rejection


def test_crlf_answer_leaves_no_carriage_return(toy):
    answer = (CORPUS / "03_crlf.txt").read_bytes().decode()
    assert "\r" in answer
    parent = toy.source_files()
    proposal = proposal_from_answer(answer, parent_id=None, parent=parent, seed_files=parent,
                                    editable=toy.manifest.program.editable, seen=set(), call=None)
    assert "\r" not in proposal.files["train.py"]


def test_repeated_block_is_parsed_once():
    parsed = parse_edits((CORPUS / "07_repeated_block.txt").read_text(), ("train.py",))
    assert len(parsed.blocks) == 1
    assert any("kept once" in n for n in parsed.notes)


def test_reasoning_section_is_ignored():
    parsed = parse_edits((CORPUS / "11_think_section.txt").read_text(), ("train.py",))
    assert [b.search for b in parsed.blocks] == ["GRAD_CLIP = 1.0  # search: float[0.1, 5.0]\n"]


def test_unterminated_block_is_never_half_applied():
    parsed = parse_edits((CORPUS / "26_partial_then_complete.txt").read_text(), ("train.py",))
    assert parsed.unterminated == 1 and len(parsed.blocks) == 1
    assert parsed.blocks[0].replace == "N_LAYER = 5  # search: int[1, 6]\n"


def test_shifted_indentation_reindents_the_replacement():
    text = "def f():\n    if x:\n        a = 1\n    return a\n"
    block = Block("f.py", "if x:\n    a = 1\n", "if x:\n    a = 2\n    b = 3\n")
    new, note = apply_block(text, block)
    assert new == "def f():\n    if x:\n        a = 2\n        b = 3\n    return a\n"
    assert note and "shifted" in note


def test_tolerant_match_must_still_be_unique():
    text = "a = 1   \nb = 2\na = 1\n"
    with pytest.raises(Rejected) as exc:
        apply_block(text, Block(None, "a = 1 \n", "a = 3\n"))
    assert exc.value.reason == "ambiguous"


def test_file_name_written_with_a_directory_resolves_to_the_editable_path():
    parsed = parse_edits((CORPUS / "24_name_in_fence_header.txt").read_text(), ("train.py",))
    assert parsed.blocks[0].path == "train.py"


def test_reasoning_of_every_known_shape_is_not_the_answer():
    from orchestrator.generators.edits.parse import normalize

    assert normalize("[THINK]draft[/THINK]real") == "real"
    assert normalize("<reasoning>x</reasoning>y") == "y"
    assert normalize("◁think▷a◁/think▷b") == "b"
    harmony = ("<|channel|>analysis<|message|>a<|end|><|start|>assistant<|channel|>commentary"
               "<|message|>c<|end|><|start|>assistant<|channel|>final<|message|>F<|return|>")
    assert normalize(harmony) == "F"
    assert normalize("analysisMaybe X=9.assistantfinalX = 1") == "X = 1", "tokens stripped"


def test_elisions_are_new_placeholder_lines_never_code_or_the_parents_own_comments():
    from orchestrator.generators.edits.validate import elisions

    parent = "def f():\n    # ... keep this as before\n    return 1\n"
    assert elisions(parent, parent) == []
    assert elisions("class P(Protocol):\n    def f(self): ...\n    ...\n", "") == []
    assert elisions("x = 1\n# ... rest unchanged ...\n", "") == ["# ... rest unchanged ..."]
    assert elisions("x = 1\n    # (rest of the code omitted)\n", "") == [
        "# (rest of the code omitted)"]
    assert elisions("x = 1  # the rest is tuned below\n", "") == []

"""Each rule a proposal must meet before anything is built, and the diffs a valid one carries."""

from __future__ import annotations

import pytest

from orchestrator.generators.base import Reason, Rejected
from orchestrator.generators.config import ValidationConfig
from orchestrator.generators.edits.validate import check_files, proposal_from_answer
from orchestrator.program import variant_hash

EDIT = ("train.py\n<<<<<<< SEARCH\nN_LAYER = 2  # search: int[1, 6]\n=======\n{new}\n"
        ">>>>>>> REPLACE\n")


def _propose(program, answer, seen=frozenset(), limits=ValidationConfig(), parent=None):
    seed = program.source_files()
    return proposal_from_answer(
        answer, parent_id="p", parent=parent or seed, seed_files=seed,
        editable=program.manifest.program.editable, seen=seen, call=None, limits=limits,
    )


def _reason(proposal) -> str:
    assert not proposal.valid and proposal.files is None
    return proposal.rejection.split(":")[0]


def test_valid_edit_carries_diffs_against_parent_and_seed(toy):
    seed = toy.source_files()
    first = _propose(toy, EDIT.format(new="N_LAYER = 3  # search: int[1, 6]"))
    assert first.valid
    second = _propose(toy, "train.py\n<<<<<<< SEARCH\nN_HEAD = 4  # search: int[1, 8]\n"
                      "=======\nN_HEAD = 2  # search: int[1, 8]\n>>>>>>> REPLACE\n",
                      parent=first.files)
    assert second.valid
    assert "-N_HEAD = 4" in second.diff_parent and "-N_LAYER" not in second.diff_parent
    assert "-N_LAYER = 2" in second.diff_seed and "-N_HEAD = 4" in second.diff_seed
    assert set(second.files) == set(seed), "unchanged editable files are carried whole"


def test_syntax_error_is_rejected_with_its_line(toy):
    proposal = _propose(toy, EDIT.format(new="N_LAYER = (2"))
    assert _reason(proposal) == Reason.SYNTAX
    assert "train.py:" in proposal.rejection


def test_null_byte_is_a_syntax_rejection_not_a_crash(toy):
    assert _reason(_propose(toy, EDIT.format(new="N_LAYER = 2\x00"))) == Reason.SYNTAX


def test_file_over_the_size_limit_is_rejected(toy):
    huge = "N_LAYER = 2\n" + "# padding\n" * 5000
    assert _reason(_propose(toy, EDIT.format(new=huge))) == Reason.TOO_LARGE
    small_cap = ValidationConfig(max_file_bytes=1000)
    assert _reason(_propose(toy, EDIT.format(new="N_LAYER = 3"), limits=small_cap)) == "too_large"


def test_no_change_is_rejected(toy):
    same = EDIT.format(new="N_LAYER = 2  # search: int[1, 6]")
    assert _reason(_propose(toy, same)) == Reason.UNCHANGED


def test_source_seen_before_is_a_duplicate(toy):
    answer = EDIT.format(new="N_LAYER = 3  # search: int[1, 6]")
    first = _propose(toy, answer)
    assert first.valid
    again = _propose(toy, answer, seen={variant_hash(first.files)})
    assert _reason(again) == Reason.DUPLICATE


def test_edit_of_a_file_outside_editable_is_rejected(toy):
    answer = ('evaluate.py\n<<<<<<< SEARCH\nprint("evaluate")\n=======\nprint(1)\n'
              ">>>>>>> REPLACE\n")
    assert _reason(_propose(toy, answer)) == Reason.NOT_EDITABLE


def test_check_files_refuses_extra_files(toy):
    files = dict(toy.source_files(), **{"evaluate.py": "print(1)\n"})
    with pytest.raises(Rejected) as exc:
        check_files(files, toy.source_files(), toy.manifest.program.editable, set())
    assert exc.value.reason == Reason.NOT_EDITABLE


@pytest.mark.parametrize(
    ("answer", "reason"),
    [
        ("Nothing to change.", Reason.NO_EDIT),
        ("train.py\n<<<<<<< SEARCH\nN_LAYER = 2\n=======\nN_LAY", Reason.UNTERMINATED),
        (EDIT.replace("N_LAYER = 2", "N_LAYERS = 2").format(new="x = 1"), Reason.NO_MATCH),
        ("model.py\n<<<<<<< SEARCH\n        self.steps = 0\n=======\n        pass\n"
         ">>>>>>> REPLACE\n", Reason.AMBIGUOUS),
        ("```python train.py\nN_LAYER = 3\n```\n", Reason.TRUNCATED),
    ],
)
def test_parse_and_apply_rejections(toy, answer, reason):
    assert _reason(_propose(toy, answer)) == reason

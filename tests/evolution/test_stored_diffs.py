"""The diffs the loop stores (parent.diff, seed.diff, best.diff) apply with ``git apply``."""

from __future__ import annotations

import subprocess

import pytest

from orchestrator.evolution import loop
from orchestrator.generators.edits.diffs import unified_diff


def test_the_loop_stores_diffs_made_by_the_one_unified_diff():
    assert loop.unified_diff is unified_diff


@pytest.mark.parametrize(("old", "new"), [("a = 1\nb = 2", "a = 1\nb = 3"),
                                          ("a = 1\n", "a = 1\nb = 2"),
                                          ("a = 1\nb = 2", "a = 1\n")])
def test_a_diff_of_a_file_without_a_final_newline_applies_with_git(tmp_path, old, new):
    (tmp_path / "train.py").write_text(old)
    patch = tmp_path / "best.diff"
    patch.write_text(unified_diff({"train.py": old}, {"train.py": new}))
    subprocess.run(["git", "apply", "--check", str(patch)], cwd=tmp_path, check=True,
                   capture_output=True)
    subprocess.run(["git", "apply", str(patch)], cwd=tmp_path, check=True, capture_output=True)
    assert (tmp_path / "train.py").read_text() == new

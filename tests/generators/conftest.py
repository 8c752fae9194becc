"""Fixtures of the generator tests: a two-file toy program and a one-file copy of it."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from orchestrator.program import Program

FIXTURES = Path(__file__).parent / "fixtures"


@pytest.fixture(scope="session")
def toy() -> Program:
    """Editable: train.py (with a declared search space) and model.py."""
    return Program.load(FIXTURES / "toy")


@pytest.fixture(scope="session")
def single(tmp_path_factory) -> Program:
    """The toy program with train.py as its only editable file."""
    root = tmp_path_factory.mktemp("single")
    for name in ("train.py", "model.py", "evaluate.py"):
        shutil.copy(FIXTURES / "toy" / name, root / name)
    manifest = (FIXTURES / "toy" / "program.toml").read_text()
    (root / "program.toml").write_text(
        manifest.replace('editable = ["train.py", "model.py"]', 'editable = ["train.py"]')
    )
    return Program.load(root)


@pytest.fixture(scope="session")
def tiny_lm(tmp_path_factory) -> Path:
    """A random-weight GPT-2 with a chat template, saved to a folder (no model hub here)."""
    from orchestrator.generators.testing import build_tiny_lm

    return build_tiny_lm(tmp_path_factory.mktemp("tiny_lm"), n_positions=4096)

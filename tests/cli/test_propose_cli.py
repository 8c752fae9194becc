"""`selfprog propose`: proposals from a program's shipped source, printed as diffs."""

from __future__ import annotations

from pathlib import Path

from typer.testing import CliRunner

from orchestrator.cli.app import app

TOY = Path(__file__).parents[1] / "generators" / "fixtures" / "toy"


def test_propose_prints_the_choice_and_each_diff():
    result = CliRunner().invoke(app, ["propose", str(TOY), "--backend", "mutate", "--n", "2"])
    assert result.exit_code == 0, result.output
    assert "generator: mutate" in result.output
    assert result.output.count("proposal ") == 2 and result.output.count("--- a/train.py") == 2


def test_propose_with_a_backend_that_cannot_start_fails_with_one_line():
    result = CliRunner().invoke(app, ["propose", str(TOY), "--backend", "openai"])
    assert result.exit_code == 2
    assert "set generator.openai.base_url or OPENAI_BASE_URL" in result.output

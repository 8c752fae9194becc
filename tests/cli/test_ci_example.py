"""The shipped GitHub Actions workflow (examples/ci/evolve.yml) names only real flags, hands
signals to selfprog (``exec``), and uploads the run and its summary whatever happens."""

from __future__ import annotations

import shlex
from pathlib import Path

import typer.main
import yaml

from orchestrator.cli.app import app

WORKFLOW = Path(__file__).resolve().parents[2] / "examples" / "ci" / "evolve.yml"


def _evolve_options() -> set[str]:
    command = typer.main.get_command(app).commands["evolve"]  # type: ignore[attr-defined]
    return {opt for p in command.params for opt in (*p.opts, *p.secondary_opts)}


def test_the_ci_workflow_execs_selfprog_evolve_with_flags_it_has():
    flow = yaml.safe_load(WORKFLOW.read_text())
    assert flow.get("on", flow.get(True)), "the workflow has triggers"
    (job,) = flow["jobs"].values()
    steps = job["steps"]
    (evolve,) = [s for s in steps if "selfprog evolve" in s.get("run", "")]
    words = shlex.split(evolve["run"])
    assert words[0] == "exec" and words[1].endswith("selfprog") and words[2] == "evolve", \
        "exec: the cancel signals must reach selfprog, not a shell in front of it"
    flags = {w.split("=")[0] for w in words if w.startswith("--")}
    assert flags and flags <= _evolve_options(), flags - _evolve_options()
    assert words[words.index("--summary-md") + 1] == "$GITHUB_STEP_SUMMARY"
    run_id = words[words.index("--run-id") + 1]
    assert run_id == "$RUN_ID" and "RUN_ID" in job["env"]

    (upload,) = [s for s in steps if str(s.get("uses", "")).startswith("actions/upload-artifact")]
    assert upload["if"] == "always()", "uploaded also when the run fails or is cancelled"
    assert upload["with"]["path"] == "runs/${{ env.RUN_ID }}"
    assert steps.index(upload) > steps.index(evolve)


def test_the_workflow_s_flags_are_the_ones_evolve_help_prints(monkeypatch):
    from typer.testing import CliRunner

    monkeypatch.setenv("COLUMNS", "200")
    shown = CliRunner().invoke(app, ["evolve", "--help"]).output
    words = shlex.split(next(s["run"] for s in yaml.safe_load(WORKFLOW.read_text())["jobs"]
                             ["evolve"]["steps"] if "selfprog evolve" in s.get("run", "")))
    for flag in (w for w in words if w.startswith("--")):
        assert flag in shown, flag

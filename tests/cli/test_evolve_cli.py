"""``selfprog evolve`` end to end on the real engine, then the commands that read a run."""

from __future__ import annotations

import json
import time

import pytest
from typer.testing import CliRunner

from orchestrator.cli.app import app
from tests.evolution.quickprog import remove_quick_images, write_quick_program


@pytest.mark.docker
@pytest.mark.slow
def test_evolve_runs_real_containers_and_leaves_a_report_a_summary_and_the_best_diff(
        tmp_path, docker_client, runtime_image):
    program = write_quick_program(tmp_path / "quick", nonce=f"cli {time.time()}")
    runs, md = tmp_path / "runs", tmp_path / "summary.md"
    cli = CliRunner()
    try:
        done = cli.invoke(app, ["evolve", "--program", str(program.root),
                                "--variants", "6", "--generator", "mutate", "--run-id", "ci",
                                "--set", f'runs_dir="{runs}"', "--summary-md", str(md)])
        assert done.exit_code == 0, done.output
        folder = runs / "ci"
        # no terminal here (as in CI): progress is one line per finished evaluation
        assert done.output.count("] evaluations ") >= 7, done.output
        assert f"report: {folder / 'report.html'}" in done.output
        summary = json.loads((folder / "summary.json").read_text())
        assert summary["counts"]["variants"] == 7 and summary["counts"]["pending"] == 0
        assert summary["counts"]["statuses"] == {"ok": 7}
        assert summary["best"]["value"] <= summary["seed"]["value"]
        assert md.read_text().startswith("## selfprog run `ci`")
        assert "**Stopped:** variant budget" in md.read_text() and "**Improved:**" in md.read_text()
        if summary["best"]["id"] != summary["seed"]["id"]:
            assert "+X = " in (folder / "best.diff").read_text() or "+Y = " in (
                folder / "best.diff").read_text()
        assert not docker_client.containers.list(all=True, filters={"label": "selfprog.run=ci"})

        common = ["--runs-dir", str(runs)]
        best = cli.invoke(app, ["best", "ci", *common])
        assert best.exit_code == 0 and best.output.startswith(summary["best"]["id"])
        shown = cli.invoke(app, ["show", "ci", summary["best"]["id"][:8], *common])
        assert shown.exit_code == 0 and "SLEEP_S" in shown.output and "eval.log" in shown.output
        tree = cli.invoke(app, ["lineage", "ci", *common])
        assert tree.exit_code == 0 and summary["seed"]["id"] in tree.output
        listed = cli.invoke(app, ["status", *common])
        assert "ci  quick  finished  7 variants" in listed.output
        assert cli.invoke(app, ["report", "ci", *common]).exit_code == 0
        collected = cli.invoke(app, ["gc", "ci", *common])
        assert collected.exit_code == 0 and "collected" in collected.output
    finally:
        remove_quick_images(docker_client)


def test_a_misspelt_override_exits_with_the_config_code_naming_the_key(tmp_path):
    done = CliRunner().invoke(app, ["evolve", "--no-live", "--set", "budget.wallclock=3"])
    assert done.exit_code == 2
    assert "budget.wallclock" in done.output


def test_resuming_a_run_that_does_not_exist_is_an_error(tmp_path):
    done = CliRunner().invoke(app, ["evolve", "--no-live", "--resume", "nope",
                                    "--set", f'runs_dir="{tmp_path}"'])
    assert done.exit_code == 1 and "no run 'nope'" in done.output

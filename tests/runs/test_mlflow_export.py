"""MLflow export and live tracking, read back with MLflow's own client from its SQLite store.

The loop runs on the fake runner (what is exported is the point, not the containers).
"""

from __future__ import annotations

import logging
import re

import pytest
from mlflow import MlflowClient
from typer.testing import CliRunner

from orchestrator.cli.app import app
from orchestrator.evolution.launch import run_evolution
from orchestrator.program import Program
from orchestrator.result import StageResult, Status, VariantResult
from orchestrator.runs.mlflow_export import default_uri, export_run
from orchestrator.runs.store import Store
from tests.evolution.fakes import FakeRunner
from tests.evolution.quickprog import write_quick_program
from tests.runs.test_step_summary import Backend


class CrashesThird(FakeRunner):
    """The quick program's loss; the third evaluation crashes."""

    def run(self, request):
        if len(self.calls) == 2:
            self.calls.append((request.variant.id, request.seed, (), None))
            request.folder.mkdir(parents=True, exist_ok=True)
            (request.folder / "train.log").write_text("Traceback: boom\n")
            stage = StageResult(stage="train", status=Status.CRASH, exit_code=1, error="boom")
            return VariantResult(variant_id=request.variant.id, status=Status.CRASH,
                                 stages=[stage], error="boom")
        return super().run(request)


def _run(tmp_path, **over):
    program = write_quick_program(tmp_path / "quick")
    overrides = {"program": str(program.root), "runs_dir": str(tmp_path / "runs"),
                 "run_id": "r", "generator.backend": "mutate", "budget.variants": 2,
                 "slots.count": 1, **over}
    run_evolution(None, overrides, backend=Backend(CrashesThird()))
    return tmp_path / "runs" / "r", Program.load(program.root)


def _read(run):
    client = MlflowClient(tracking_uri=default_uri(run))
    exp = client.get_experiment_by_name(f"selfprog/quick/{run.name}")
    assert exp is not None
    runs = client.search_runs([exp.experiment_id], max_results=1000)
    return client, {r.data.tags["selfprog.variant"]: r for r in runs}


def test_export_logs_one_mlflow_run_per_variant_and_a_second_export_adds_nothing(tmp_path):
    run, program = _run(tmp_path)
    done = export_run(run, program)
    store = Store(run)
    variants = store.variants()
    assert done.logged == len(variants) == 3 and done.unsettled == 0
    client, logged = _read(run)
    assert set(logged) == {v.id for v in variants}
    for v in variants:
        got = logged[v.id]
        evals = store.evaluations(variant_id=v.id)
        status = evals[0].status.value
        assert got.data.tags["status"] == status and got.data.tags["verdict"] == v.verdict
        assert got.info.status == ("FINISHED" if status == "ok" else "FAILED")
        if v.value is not None:
            assert got.data.metrics["loss"] == pytest.approx(v.value)
        x = re.search(r"^X = (\S+)", v.files()["train.py"], re.M).group(1)
        assert float(got.data.params["setting.X"]) == float(x)
        artifacts = {a.path for a in client.list_artifacts(got.info.run_id)}
        assert {"parent.diff", "seed.diff", "eval-0"} <= artifacts
        assert {a.path for a in client.list_artifacts(got.info.run_id, "eval-0")} >= {
            "eval-0/train.log", "eval-0/result.json"}
        if v.parent_id is None:
            assert got.data.params["diff_summary"] == "(the seed)"
        else:
            assert got.data.params["diff_summary"].startswith("train.py +")
            assert got.data.tags["backend"] == "mutate"
            assert got.data.tags["mlflow.parentRunId"] == logged[v.parent_id].info.run_id
    assert any(r.data.tags["status"] == "crash" for r in logged.values())

    again = CliRunner().invoke(app, ["export", "mlflow", "r", "--runs-dir", str(run.parent)])
    assert again.exit_code == 0, again.output
    assert "logged 0 variant(s) (3 were already there" in again.output
    assert f"{default_uri(run)}\t" in again.output
    assert len(_read(run)[1]) == 3 and len(client.search_runs(
        [client.get_experiment_by_name("selfprog/quick/r").experiment_id])) == 3


def test_live_tracking_logs_variants_as_they_land(tmp_path):
    run, program = _run(tmp_path, **{"tracking.mlflow": True})
    _client, logged = _read(run)
    assert len(logged) == 3, "every variant logged by the loop itself"
    assert export_run(run, program).logged == 0


def test_a_broken_tracking_store_is_a_warning_and_the_run_finishes(tmp_path, caplog):
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("a file where the store's folder should be")
    with caplog.at_level(logging.WARNING, logger="orchestrator"):
        run, _program = _run(tmp_path, **{"tracking.mlflow": True,
                                          "tracking.mlflow_uri": f"sqlite:///{blocker}/x.db"})
    assert Store(run).run_info()["state"] == "finished"
    assert len(Store(run).variants()) == 3
    assert "mlflow tracking failed" in caplog.text

"""A node's reply is checked before anything lands: a malformed or misaddressed one is the
engine's fault (``infra_error``, re-queued), never a crash of the head or a record it trusts."""

from __future__ import annotations

import json

from orchestrator.cluster.backend import RayRunner
from orchestrator.cluster.transfer import pack_folder
from orchestrator.result import Status, VariantResult
from orchestrator.runner import RunRequest, Variant

from ..evolution.quickprog import write_quick_program


def request(tmp_path):
    program = write_quick_program(tmp_path / "quick")
    variant = Variant(program, program.source_files())
    return RunRequest(variant=variant, run_id="r", folder=tmp_path / "v" / "eval-0", seed=3)


def reply(tmp_path, **result) -> dict:
    node_folder = tmp_path / "node"
    (node_folder / "artifacts").mkdir(parents=True)
    (node_folder / "train.log").write_text("log\n")
    (node_folder / "artifacts" / "params.json").write_text("{}")
    return {"result": json.dumps(result), "folder": pack_folder(node_folder, 1 << 20),
            "node": "n1"}


def runner() -> RayRunner:
    return RayRunner([], None, {})  # type: ignore[arg-type]  # no agent is asked here


def test_a_good_reply_lands_where_the_local_runner_writes(tmp_path):
    req = request(tmp_path)
    got = runner()._land(req, reply(tmp_path, variant_id=req.variant.id, status="ok", seed=3,
                                    metrics={"loss": 1.0}, folder="/node/scratch/x",
                                    stages=[{"stage": "train", "status": "ok",
                                             "log_path": "/node/scratch/x/train.log"}]))
    assert got.status is Status.OK and got.metrics == {"loss": 1.0}
    assert got.folder == str(req.folder) and got.stages[0].log_path == str(req.folder / "train.log")
    assert (req.folder / "artifacts" / "params.json").is_file()
    stored = VariantResult.model_validate_json((req.folder / "result.json").read_text())
    assert stored.folder == str(req.folder)


def test_a_reply_for_another_evaluation_is_an_infra_error(tmp_path):
    req = request(tmp_path)
    got = runner()._land(req, reply(tmp_path, variant_id="f" * 16, status="ok", seed=3,
                                    metrics={"loss": 0.0}))
    assert got.status is Status.INFRA_ERROR and "another evaluation" in (got.error or "")
    assert got.metrics == {}


def test_a_malformed_reply_is_an_infra_error_not_a_crash(tmp_path):
    req = request(tmp_path)
    for bad in ({"result": "{not json", "folder": b""}, {"folder": b""},
                {"result": json.dumps({"variant_id": req.variant.id, "status": "ok",
                                       "seed": 3, "metrics": {"loss": "NaN?"}}), "folder": b""}):
        got = runner()._land(req, bad)
        assert got.status is Status.INFRA_ERROR and "malformed" in (got.error or ""), bad

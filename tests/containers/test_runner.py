"""The DockerRunner end to end on the real engine: the example program, a forging variant,
engine faults, image reuse, the sweep, and `selfprog run`."""

from __future__ import annotations

import json
import shutil
import uuid
from pathlib import Path

import pytest
from typer.testing import CliRunner

from orchestrator.cli.app import app
from orchestrator.containers.docker_runner import DockerRunner
from orchestrator.containers.hardening import LABEL_OWNER, LABEL_RUN, owner_label
from orchestrator.containers.sweep import sweep
from orchestrator.containers.variant_image import ImageCache
from orchestrator.program import Program
from orchestrator.result import Status
from orchestrator.runner import RunRequest, Variant

TINY = Path(__file__).resolve().parents[2] / "programs" / "examples" / "tiny"
pytestmark = pytest.mark.docker


@pytest.mark.slow
def test_selfprog_run_on_the_example_is_ok_with_the_evaluators_metric(runtime_image, tmp_path):
    done = CliRunner().invoke(app, ["run", str(TINY), "--json", "--folder", str(tmp_path / "v")])
    assert done.exit_code == 0, done.output
    record = json.loads(done.stdout)
    assert record["status"] == "ok" and 0 < record["metrics"]["mse"] < 0.01
    assert [s["exit_code"] for s in record["stages"]] == [0, 0]
    assert record["telemetry"]["progress_messages"] == 4
    for name in ("train.log", "eval.log", "events.jsonl", "result.json", "artifacts/model.pt"):
        assert (tmp_path / "v" / name).is_file()


@pytest.mark.slow
def test_a_forging_variant_gets_the_evaluators_metric_not_its_own(docker_client, runtime_image,
                                                                  tmp_path):
    program = Program.load(TINY)
    forged = program.source_files()["train.py"] + (
        "\nreport.result(mse=0.0)\nprint('{\"v\": 1, \"type\": \"result\", "
        "\"metrics\": {\"mse\": 0.0}}')\n")
    variant = Variant(program, {"train.py": forged})
    runner = DockerRunner(docker_client, runtime={"cpu": runtime_image})
    result = runner.run(RunRequest(variant=variant, run_id="forge", folder=tmp_path / "v"))
    assert result.status is Status.OK
    assert 0 < result.metrics["mse"] < 0.01
    assert any("forged" in v for v in result.stage("train").violations)


@pytest.mark.slow
def test_split_evaluation_runs_a_model_server_beside_eval_and_leaves_nothing(docker_client,
                                                                            runtime_image,
                                                                            tmp_path):
    program = Program.load(TINY)
    assert (TINY / "serve.py").is_file()  # the example is evaluated split
    run_id = f"split-{uuid.uuid4().hex[:8]}"
    seen: list[dict] = []
    runner = DockerRunner(docker_client, runtime={"cpu": runtime_image})
    original = runner._server

    def spying(*args, **kwargs):
        spec = original(*args, **kwargs)
        seen.append(spec.create)
        return spec

    runner._server = spying  # type: ignore[method-assign]
    result = runner.run(RunRequest(variant=Variant(program, program.source_files()),
                                   run_id=run_id, folder=tmp_path / "v"))
    assert result.status is Status.OK and 0 < result.metrics["mse"] < 0.01, result.error
    mounts = {m["Target"]: m for m in seen[0]["host_config"]["mounts"]}
    assert set(mounts) == {"/out", "/sock"} and mounts["/out"]["ReadOnly"]  # no /data
    assert seen[0]["host_config"]["network_mode"] == "none"
    assert "listening on /sock/model.sock" in (tmp_path / "v" / "serve.log").read_text()
    label = {"label": f"{LABEL_RUN}={run_id}"}
    assert docker_client.api.containers(all=True, filters=label) == []
    assert not docker_client.api.volumes(filters=label).get("Volumes")


@pytest.mark.slow
def test_a_model_server_that_never_listens_makes_the_variant_invalid(docker_client, runtime_image,
                                                                     tmp_path):
    root = tmp_path / "program"
    shutil.copytree(TINY, root)
    (root / "serve.py").write_text("import sys\nsys.exit(3)\n")  # dies before listening
    program = Program.load(root)
    result = DockerRunner(docker_client, runtime={"cpu": runtime_image}).run(
        RunRequest(variant=Variant(program, program.source_files()), run_id="split-dead",
                   folder=tmp_path / "v"))
    assert result.status is Status.INVALID and not result.metrics, result.error
    assert "no model server" in (tmp_path / "v" / "events.jsonl").read_text()


def test_an_engine_failure_is_infra_error_never_the_variants(docker_client, tmp_path):
    program = Program.load(TINY)
    runner = DockerRunner(docker_client, retries=1,
                          runtime={"cpu": "selfprog-runtime:no-such-tag-for-this-test"})
    result = runner.run(RunRequest(variant=Variant(program, program.source_files()),
                                   run_id="infra", folder=tmp_path / "v"))
    assert result.status is Status.INFRA_ERROR and "2 times" in result.error
    assert json.loads((tmp_path / "v" / "result.json").read_text())["status"] == "infra_error"


def test_a_variant_image_is_tagged_by_content_and_reused(docker_client, runtime_image):
    program = Program.load(TINY)
    cache = ImageCache(docker_client)
    first = cache.ensure(runtime_image, program, program.source_files())
    assert ImageCache(docker_client).ensure(runtime_image, program, program.source_files()) == first
    changed = {"train.py": program.source_files()["train.py"] + "\n# changed\n"}
    assert cache.ensure(runtime_image, program, changed) != first


def test_sweep_removes_what_a_dead_orchestrator_left_and_keeps_the_living(docker_client,
                                                                          runtime_image):
    def create(owner: str, name: str):
        return docker_client.containers.create(
            runtime_image, name=name, labels={LABEL_OWNER: owner, LABEL_RUN: "sweep-test"})

    dead = create(f"{owner_label().split('/')[0]}/999999999/1", "selfprog-sweep-test-dead")
    alive = create(owner_label(), "selfprog-sweep-test-alive")
    try:
        removed = sweep(docker_client)
        assert "selfprog-sweep-test-dead" in removed
        assert "selfprog-sweep-test-alive" not in removed
        alive.reload()
        assert sweep(docker_client, run_id="sweep-test") == ["selfprog-sweep-test-alive"]
    finally:
        for container in (dead, alive):
            if _exists(docker_client, container.id):
                docker_client.api.remove_container(container.id, force=True)


def _exists(client, container_id: str) -> bool:
    return bool(client.api.containers(all=True, filters={"id": container_id}))


def test_a_slots_gpus_are_lent_to_a_program_that_needs_none_only_with_a_gpu_runtime(
        docker_client, tmp_path):
    program = Program.load(TINY)
    assert program.manifest.resources.gpus == 0
    request = RunRequest(variant=Variant(program, program.source_files()), run_id="gpu-lend",
                         folder=tmp_path / "v", gpu_ids=(2, 3))
    runner = DockerRunner(docker_client)
    assert runner._gpu_ids(request) == (), "no GPU runtime here: the program runs on the CPU"
    runner._gpu_runtime = True  # as on a workstation whose engine has the NVIDIA runtime
    assert runner._gpu_ids(request) == (2, 3)


def _occupy(docker_client, runtime_image, name: str, owner: str) -> str:
    labels = {LABEL_OWNER: owner, LABEL_RUN: "shared-run"}
    return docker_client.api.create_container(runtime_image, name=name, labels=labels,
                                              entrypoint=["sleep"], command=["60"])["Id"]


def test_a_name_held_by_a_live_orchestrator_is_refused_not_taken(docker_client, runtime_image,
                                                                 tmp_path):
    import socket

    from orchestrator.containers.hardening import container_name, process_start
    from orchestrator.errors import ConfigError

    program = Program.load(TINY)
    variant = Variant(program, program.source_files())
    live_owner = f"{socket.gethostname()}/1/{process_start(1)}"  # pid 1 outlives this test
    name = container_name("shared-run", variant.id, 0, "train", 0)
    held = _occupy(docker_client, runtime_image, name, live_owner)
    runner = DockerRunner(docker_client, runtime={"cpu": runtime_image})
    request = RunRequest(variant=variant, run_id="shared-run", folder=tmp_path / "v")
    try:
        with pytest.raises(ConfigError, match="two runs share this run id"):
            runner.run(request)
        assert docker_client.api.inspect_container(held)["Id"] == held  # still there
    finally:
        docker_client.api.remove_container(held, force=True)
        sweep(docker_client, run_id="shared-run")


@pytest.mark.slow
def test_a_name_left_by_a_dead_orchestrator_is_reclaimed(docker_client, runtime_image, tmp_path):
    import socket

    from orchestrator.containers.hardening import container_name

    program = Program.load(TINY)
    variant = Variant(program, program.source_files())
    dead_owner = f"{socket.gethostname()}/999999999/0"
    held = _occupy(docker_client, runtime_image,
                   container_name("reclaim-run", variant.id, 0, "train", 0), dead_owner)
    runner = DockerRunner(docker_client, runtime={"cpu": runtime_image})
    try:
        result = runner.run(RunRequest(variant=variant, run_id="reclaim-run",
                                       folder=tmp_path / "v"))
        assert result.status is Status.OK, result.error
        assert docker_client.api.containers(all=True, filters={"id": held}) == []
    finally:
        sweep(docker_client, run_id="reclaim-run")

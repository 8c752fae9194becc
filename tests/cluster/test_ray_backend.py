"""The Ray backend on a real local cluster (head plus two nodes, separate processes) and the real
Docker engine: evolution across nodes, a node killed mid-TRAIN, the driver killed with -9 and
resumed, and the runtime image streamed to a node that lacks it."""

from __future__ import annotations

import io
import os
import signal
import sqlite3
import subprocess
import sys
import tarfile
import threading
import time
from pathlib import Path

import pytest

from orchestrator.containers.hardening import LABEL_NODE, LABEL_RUN, LABEL_STAGE
from orchestrator.evolution.launch import run_evolution
from orchestrator.result import Status

from ..evolution.quickprog import remove_quick_images, write_quick_program
from .conftest import ROOT, slot_node

pytestmark = [pytest.mark.docker, pytest.mark.slow]


@pytest.fixture
def backend(ray_cluster, runtime_image):
    from orchestrator.cluster.backend import RayBackend

    made = RayBackend.connect()
    try:
        yield made
    finally:
        made.close()


@pytest.fixture
def quick_images(docker_client):
    yield
    remove_quick_images(docker_client)


def overrides(runs: Path, program: Path, run_id: str, variants: int) -> dict:
    return {"runs_dir": str(runs), "program": str(program), "run_id": run_id,
            "budget.variants": variants, "generator.backend": "mutate"}


def evaluations(runs: Path, run_id: str) -> list[tuple]:
    with sqlite3.connect(f"file:{runs / run_id / 'run.db'}?mode=ro", uri=True) as db:
        return db.execute("SELECT variant_id, seed, state, status FROM evaluations").fetchall()


def leftovers(client, run_id: str, timeout: float = 30.0) -> list:
    """The run's containers, waited for: a dead node's are swept by the survivors shortly."""
    end = time.monotonic() + timeout
    while True:
        found = client.containers.list(all=True, filters={"label": f"{LABEL_RUN}={run_id}"})
        if not found or time.monotonic() > end:
            return found
        time.sleep(0.5)


def test_an_evolution_on_two_nodes_runs_every_evaluation_exactly_once(
        backend, tmp_path, docker_client, quick_images):
    program = write_quick_program(tmp_path / "quick", train_s=1.0, nonce=f"two {time.time()}")
    runs = tmp_path / "runs"
    done = run_evolution(None, overrides(runs, program.root, "ray-two", 3), backend=backend)
    rows = evaluations(runs, "ray-two")
    pairs = [(vid, seed) for vid, seed, _state, _status in rows]
    assert rows and all(state == "done" and status == "ok" for *_r, state, status in rows)
    assert len(pairs) == len(set(pairs)), "an evaluation was stored twice"
    history = backend.runner(False).history
    ran = [(p.variant_id, p.seed) for p in history]
    assert sorted(ran) == sorted(pairs), "an evaluation ran twice, or one never ran"
    assert {p.node for p in history} == {a.node for a in backend.agents}, \
        "both nodes should have run variants"
    assert done.outcome.utilisation > 0
    folders = sorted((runs / "ray-two" / "variants").glob("*/eval-*"))
    assert len(folders) == len(pairs)
    for folder in folders:  # it came back through the head's checks, complete
        assert (folder / "result.json").is_file() and (folder / "train.log").is_file()
        assert (folder / "artifacts" / "params.json").is_file(), folder
    assert not leftovers(docker_client, "ray-two", timeout=0)


def test_a_node_that_lacks_an_image_receives_it_by_stream_and_checks_its_id(
        backend, docker_client):
    from orchestrator.cluster.nodes import ship_image
    from orchestrator.containers.image_stream import save_chunks
    from orchestrator.errors import ImageError

    tag = f"selfprog-streamtest:{os.getpid()}-{int(time.time())}"
    context = io.BytesIO()
    with tarfile.open(fileobj=context, mode="w") as tar:
        for name, data in {"Dockerfile": b"FROM scratch\nCOPY x /x\n",
                           "x": f"{tag}\n".encode()}.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    context.seek(0)
    image, _log = docker_client.images.build(fileobj=context, custom_context=True, tag=tag)
    agent = backend.agents[0].handle
    try:
        chunks = list(save_chunks(docker_client, tag, 4096))
        docker_client.images.remove(tag, force=True)  # the node's engine (shared) lacks it now
        with pytest.raises(ImageError, match="docker load of .* failed"):
            ship_image(agent, [*chunks[:-1], chunks[-1][:-1] + b"!"], tag, image.id)
        with pytest.raises(ImageError, match="not sha256:0+"):
            ship_image(agent, chunks, tag, "sha256:" + "0" * 64)
        assert not docker_client.images.list(name=tag.split(":")[0]), "a wrong image kept its tag"
        ship_image(agent, chunks, tag, image.id)
        assert docker_client.images.get(tag).id == image.id
        import ray

        assert ray.get(agent.has_image.remote(tag, image.id))
    finally:
        for found in docker_client.images.list(name=tag.split(":")[0]):
            docker_client.images.remove(found.id, force=True)


def test_a_node_killed_during_train_reruns_its_variant_on_the_other_and_leaves_nothing(
        ray_cluster, backend, tmp_path, docker_client, quick_images):
    cluster, nodes = ray_cluster
    program = write_quick_program(tmp_path / "quick", train_s=3.0, nonce=f"kill {time.time()}")
    runs = tmp_path / "runs"
    victim = nodes[1]
    victim_id = victim.node_id[:16]
    finished: list = []
    thread = threading.Thread(target=lambda: finished.append(run_evolution(
        None, overrides(runs, program.root, "ray-kill", 3), backend=backend)), daemon=True)
    thread.start()
    end = time.monotonic() + 120
    while not docker_client.containers.list(filters={"label": [
            f"{LABEL_RUN}=ray-kill", f"{LABEL_NODE}={victim_id}", f"{LABEL_STAGE}=train"]}):
        assert time.monotonic() < end and thread.is_alive(), "node B never ran a TRAIN stage"
        time.sleep(0.1)
    cluster.remove_node(victim, allow_graceful=False)
    nodes[1] = slot_node(cluster)  # the module's later tests have two nodes again
    thread.join(timeout=240)
    assert finished, "the run did not finish"
    history = backend.runner(False).history
    lost = [(p.variant_id, p.seed) for p in history
            if p.node == victim_id and p.status is Status.INFRA_ERROR]
    assert lost, "the killed node's variant was not reported lost"
    for vid, seed in lost:
        assert any((p.variant_id, p.seed, p.status) == (vid, seed, Status.OK) for p in history
                   if p.node != victim_id), "the lost variant did not re-run on the other node"
    rows = evaluations(runs, "ray-kill")
    assert all(state == "done" and status == "ok" for *_r, state, status in rows)
    assert len({(v, s) for v, s, *_r in rows}) == len(rows)
    assert not leftovers(docker_client, "ray-kill"), "the dead node's containers were left"


def test_kill9_of_the_driver_then_resume_loses_nothing_and_repeats_nothing(
        ray_cluster, tmp_path, docker_client, runtime_image, quick_images):
    cluster, _nodes = ray_cluster
    program = write_quick_program(tmp_path / "quick", train_s=2.0, nonce=f"k9 {time.time()}")
    runs = tmp_path / "runs"
    cmd = [sys.executable, "-m", "orchestrator.cli", "evolve", "--no-live", "--backend", "ray",
           "--set", f'runs_dir="{runs}"', "--set", f'cluster.address="{cluster.address}"']
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    first = subprocess.Popen([*cmd, "--program", str(program.root), "--run-id", "ray-k9",
                              "--variants", "2", "--generator", "mutate"], env=env,
                             stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        end = time.monotonic() + 120
        while not docker_client.containers.list(filters={"label": [
                f"{LABEL_RUN}=ray-k9", f"{LABEL_STAGE}=train"]}):
            if first.poll() is not None or time.monotonic() > end:
                pytest.fail(f"no TRAIN stage before the kill:\n{first.stdout.read()}")
            time.sleep(0.1)
    finally:
        first.kill()
        first.wait(timeout=30)
    assert first.returncode == -signal.SIGKILL
    before = [r for r in evaluations(runs, "ray-k9") if r[2] == "done"]
    resumed = subprocess.run([*cmd, "--resume", "ray-k9"], env=env, capture_output=True,
                             text=True, timeout=300, check=False)
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    rows = evaluations(runs, "ray-k9")
    assert all(state == "done" for _v, _s, state, _st in rows), "an evaluation was left pending"
    assert len({(v, s) for v, s, *_r in rows}) == len(rows), "an evaluation was repeated"
    assert set(before) <= set(rows), "an evaluation finished before the kill was redone"
    with sqlite3.connect(f"file:{runs / 'ray-k9' / 'run.db'}?mode=ro", uri=True) as db:
        variants = {v for (v,) in db.execute("SELECT id FROM variants")}
    assert {v for v, *_r in rows} == variants, "a variant was never evaluated"
    assert not leftovers(docker_client, "ray-k9"), "a container of the killed run was left"


def test_a_hung_agent_is_cut_off_at_the_head_deadline_restarted_and_its_variant_requeued(
        ray_cluster, tmp_path):
    import ray

    from orchestrator.cluster.backend import RayRunner
    from orchestrator.cluster.nodes import Agent
    from orchestrator.program import Program
    from orchestrator.runner import RunRequest, Variant

    from .hung import HungAgent

    program = write_quick_program(tmp_path / "quick")
    manifest = program.root / "program.toml"
    manifest.write_text(manifest.read_text().replace("timeout_s = 30", "timeout_s = 1"))
    program = Program.load(program.root)
    handle = ray.remote(HungAgent).options(num_cpus=0, max_restarts=-1,
                                           max_task_retries=0).remote()
    first = ray.get(handle.hello.remote())
    runner = RayRunner([Agent(handle, "hung", 0, 1.0)], None, {"cpu": ("t", "i")},
                       deadline_slack_s=1.0)  # type: ignore[arg-type]  # nothing is shipped
    request = RunRequest(variant=Variant(program, program.source_files()), run_id="hung",
                         folder=tmp_path / "v" / "eval-0")
    t0 = time.monotonic()
    result = runner.run(request)
    assert time.monotonic() - t0 < 15, "the head waited past its deadline"
    assert result.status is Status.INFRA_ERROR and "deadline" in (result.error or "")
    assert runner.free.get(timeout=30).node == "hung", "the restarted agent did not come back"
    assert ray.get(handle.hello.remote())["pid"] != first["pid"], "the hung agent was not killed"
    ray.kill(handle, no_restart=True)

"""kill -9 of the orchestrator at five points, then ``--resume``: nothing lost, nothing twice.

The orchestrator is a real ``selfprog evolve`` subprocess on the real engine with a tiny program.
It is stopped dead inside a generator call, inside an image build, inside a store transaction
(named checkpoints, orchestrator/checkpoints.py), or while a TRAIN or EVAL container runs
(watched through the engine). After the resume, every variant proposed before the kill is
finished exactly once, no container of the run is left, and the run's counts add up.
"""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from orchestrator.containers.hardening import LABEL_RUN, LABEL_STAGE

from .quickprog import remove_quick_images, write_quick_program

DRIVER = Path(__file__).with_name("crash_driver.py")
RUN = "kill9"


def evolve_cmd(program: Path, runs: Path, *extra: str) -> list[str]:
    return [sys.executable, str(DRIVER), "evolve", "--no-live", "--set", f'runs_dir="{runs}"',
            *extra, "--program", str(program)]


def db_rows(runs: Path, sql: str) -> list[tuple]:
    path = runs / RUN / "run.db"
    if not path.exists():
        return []
    with sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=10) as db:
        try:
            return db.execute(sql).fetchall()
        except sqlite3.OperationalError as exc:  # polled while the schema is being created
            if "no such table" in str(exc):
                return []
            raise


def run_containers(client, stage: str | None = None, running: bool = False) -> list:
    labels = [f"{LABEL_RUN}={RUN}"] + ([f"{LABEL_STAGE}={stage}"] if stage else [])
    found = client.containers.list(all=not running, filters={"label": labels})
    return found


def wait_for(what, timeout: float = 90.0, proc: subprocess.Popen | None = None) -> None:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if what():
            return
        if proc is not None and proc.poll() is not None:
            out = proc.stdout.read() if proc.stdout else ""
            pytest.fail(f"the orchestrator ended (exit {proc.returncode}) before the kill:\n{out}")
        time.sleep(0.05)
    pytest.fail("the kill point was never reached")


@pytest.fixture
def quick_images(docker_client):
    yield
    remove_quick_images(docker_client)


POINTS = {
    "generate": {"SELFPROG_PAUSE_AT": "generate", "SELFPROG_PAUSE_AFTER": "3"},
    "build": {"SELFPROG_PAUSE_AT": "build", "SELFPROG_PAUSE_AFTER": "3"},
    "store-write": {"SELFPROG_PAUSE_AT": "store-write", "SELFPROG_PAUSE_AFTER": "9"},
    "train": {},
    "eval": {},
}


@pytest.mark.docker
@pytest.mark.slow
@pytest.mark.parametrize("point", list(POINTS))
def test_kill9_then_resume_loses_nothing_and_repeats_nothing(point, tmp_path, docker_client,
                                                             runtime_image, quick_images):
    program = write_quick_program(tmp_path / "quick", train_s=1.0, eval_s=0.8,
                                  nonce=f"{point} {time.time()}")
    runs = tmp_path / "runs"
    marker = tmp_path / "paused"
    env = {**os.environ, **POINTS[point], "SELFPROG_PAUSE_FILE": str(marker)}
    cmd = evolve_cmd(program.root, runs, "--run-id", RUN, "--variants", "3", "--slots", "2",
                     "--generator", "mutate")
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True)
    try:
        if POINTS[point]:
            wait_for(marker.exists, proc=proc)
        else:  # a child's container of that stage is running
            wait_for(lambda: len(db_rows(runs, "SELECT id FROM variants")) >= 2
                     and run_containers(docker_client, point, running=True), proc=proc)
    finally:
        proc.kill()
        proc.wait(timeout=30)
    assert proc.returncode == -signal.SIGKILL
    proposed = {vid for (vid,) in db_rows(runs, "SELECT id FROM variants")}
    done_before = set(db_rows(runs, "SELECT id, variant_id, seed, finished FROM evaluations "
                                    "WHERE state = 'done'"))
    assert proposed, "nothing was proposed before the kill"

    resumed = subprocess.run(evolve_cmd(program.root, runs, "--resume", RUN), text=True,
                             capture_output=True, timeout=300, check=False)
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr

    variants = {vid for (vid,) in db_rows(runs, "SELECT id FROM variants")}
    evals = db_rows(runs, "SELECT id, variant_id, seed, finished, state FROM evaluations")
    assert proposed <= variants, "a variant proposed before the kill was lost"
    assert all(state == "done" for *_rest, state in evals), "an evaluation was left pending"
    pairs = [(vid, seed) for _id, vid, seed, _f, _s in evals]
    assert len(pairs) == len(set(pairs)), "a variant was evaluated twice with the same seed"
    assert {vid for vid, _seed in pairs} == variants, "a variant was never evaluated"
    assert done_before <= {row[:4] for row in evals}, "a recorded evaluation was redone"
    assert not run_containers(docker_client), "a container of the run was left behind"
    calls = dict(db_rows(runs, "SELECT outcome, COUNT(*) FROM generation_calls GROUP BY outcome"))
    assert calls.get("variant", 0) == len(variants) - 1
    assert len(variants) - 1 <= 3
    folders = {p.name.split("-", 1)[1] for p in (runs / RUN / "variants").iterdir()}
    assert folders == variants, "a variant folder is missing, or debris of the kill was kept"

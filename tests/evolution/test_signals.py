"""SIGTERM and SIGINT to a real ``selfprog evolve`` at random moments: a clean stop every time.

CI cancels a job with SIGINT or SIGTERM, a person with Ctrl-C. Each round starts the real CLI
on the real engine with a fast program, sends one signal at a random moment (while images build,
containers run, results are recorded), and checks: the exit code (130 or 143), no container or
volume of the run left, the run marked ``interrupted`` in a consistent store, the message naming
the run, and then that ``--resume`` finishes every variant exactly once. A second signal during
the clean-up must still leave nothing. Two drivers of one live run: the second is refused.

``SELFPROG_SIGNAL_ROUNDS=N`` makes the random campaign N rounds per signal (default 2;
the heavier campaign before a release: 25).
"""

from __future__ import annotations

import os
import random
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest
from docker.errors import APIError

from orchestrator.containers.hardening import LABEL_RUN

from .quickprog import remove_quick_images, write_quick_program
from .test_kill9 import DRIVER

ROUNDS = int(os.environ.get("SELFPROG_SIGNAL_ROUNDS", "2"))


def start(program: Path, runs: Path, run_id: str, *extra: str) -> subprocess.Popen:
    cmd = [sys.executable, str(DRIVER), "evolve", "--no-live", "--runs-dir", str(runs),
           "--program", str(program), "--run-id", run_id, "--generator", "mutate",
           "--slots", "2", *extra]
    return subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def resume(runs: Path, run_id: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(DRIVER), "evolve", "--no-live", "--runs-dir",
                           str(runs), "--resume", run_id], capture_output=True, text=True,
                          timeout=300, check=False)


def leftovers(client, run_id: str) -> list[str]:
    label = {"label": f"{LABEL_RUN}={run_id}"}
    return ([c.name for c in client.containers.list(all=True, filters=label)]
            + [v.name for v in client.volumes.list(filters=label)])


def state(runs: Path, run_id: str) -> str:
    with sqlite3.connect(f"file:{runs / run_id / 'run.db'}?mode=ro", uri=True) as db:
        return str(db.execute("SELECT state FROM runs").fetchone()[0])


def containers_running(client, run_id: str) -> bool:
    return bool(client.containers.list(filters={"label": f"{LABEL_RUN}={run_id}"}))


def wait_for_a_container(client, proc: subprocess.Popen, run_id: str) -> None:
    """Until the run driven by ``proc`` has a container; fails if it exits or 120 s pass."""
    deadline = time.monotonic() + 120
    while not containers_running(client, run_id):
        assert proc.poll() is None and time.monotonic() < deadline, proc.stderr
        time.sleep(0.05)


def assert_finished_exactly_once(runs: Path, run_id: str) -> None:
    with sqlite3.connect(f"file:{runs / run_id / 'run.db'}?mode=ro", uri=True) as db:
        evals = db.execute("SELECT variant_id, seed, state FROM evaluations").fetchall()
        variants = {v for (v,) in db.execute("SELECT id FROM variants")}
        made = db.execute("SELECT COUNT(*) FROM generation_calls WHERE outcome = 'variant'"
                          ).fetchone()[0]
    assert all(s == "done" for *_r, s in evals), "an evaluation was left pending"
    pairs = [(v, s) for v, s, _st in evals]
    assert len(pairs) == len(set(pairs)), "a variant was evaluated twice with one seed"
    assert {v for v, _s in pairs} == variants, "a variant was never evaluated"
    assert made == len(variants) - 1
    folders = {p.name.split("-", 1)[1] for p in (runs / run_id / "variants").iterdir()}
    assert folders == variants, "a variant folder is missing, or debris was kept"


@pytest.fixture
def quick_images(docker_client):
    yield
    try:
        remove_quick_images(docker_client)
    except APIError as exc:  # another test's run (on this shared engine) still uses one
        if exc.status_code != 409:
            raise


@pytest.mark.docker
@pytest.mark.slow
@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_a_signal_at_a_random_moment_stops_the_run_cleanly_and_resume_finishes_it_once(
        sig, tmp_path, docker_client, runtime_image, quick_images):
    rng = random.Random(f"{sig} {time.time()}")
    program = write_quick_program(tmp_path / "quick", train_s=0.4, eval_s=0.2,
                                  nonce=f"signals {sig} {time.time()}")
    for round_ in range(ROUNDS):
        runs, run_id = tmp_path / f"runs{round_}", f"sig{int(sig)}-{round_}"
        proc = start(program.root, runs, run_id, "--variants", "2")
        time.sleep(rng.uniform(0.5, 5.0))  # import, images, the seed, children: any of them
        proc.send_signal(sig)
        out, err = proc.communicate(timeout=120)
        if proc.returncode == 0:  # it finished before the signal: nothing to check this round
            continue
        if proc.returncode == -sig:  # still starting Python: the default action, no run yet
            assert not (runs / run_id / "run.db").exists(), f"round {round_}: killed mid-run"
            continue
        assert proc.returncode == 128 + sig, f"round {round_}: exit {proc.returncode}\n{err}"
        assert not leftovers(docker_client, run_id), f"round {round_}: left behind\n{err}"
        if not (runs / run_id / "run.db").exists():  # stopped before the run was created
            assert not runs.exists() or not [p for p in runs.iterdir()
                                             if not p.name.startswith(".")], err
            continue
        assert state(runs, run_id) == "interrupted"
        assert f"--resume {run_id}" in err, err
        done = resume(runs, run_id)
        assert done.returncode == 0, done.stderr
        assert state(runs, run_id) == "finished"
        assert_finished_exactly_once(runs, run_id)
        assert not leftovers(docker_client, run_id)


@pytest.mark.docker
@pytest.mark.slow
def test_a_second_signal_during_the_clean_up_forces_a_fast_exit_that_leaves_nothing(
        tmp_path, docker_client, runtime_image, quick_images):
    program = write_quick_program(tmp_path / "quick", train_s=3.0, eval_s=0.2,
                                  nonce=f"second signal {time.time()}")
    runs, run_id = tmp_path / "runs", "sig-twice"
    proc = start(program.root, runs, run_id, "--variants", "4")
    wait_for_a_container(docker_client, proc, run_id)
    proc.send_signal(signal.SIGTERM)
    time.sleep(0.05)
    proc.send_signal(signal.SIGINT)
    _out, err = proc.communicate(timeout=60)
    assert proc.returncode == 143, err  # the first signal's code
    assert not leftovers(docker_client, run_id), err
    assert state(runs, run_id) == "interrupted"


@pytest.mark.docker
@pytest.mark.slow
def test_a_second_driver_of_a_live_run_is_refused_naming_the_pid_and_touches_nothing(
        tmp_path, docker_client, runtime_image, quick_images):
    program = write_quick_program(tmp_path / "quick", train_s=2.0, eval_s=0.2,
                                  nonce=f"two drivers {time.time()}")
    runs, run_id = tmp_path / "runs", "two-drivers"
    first = start(program.root, runs, run_id, "--variants", "1")
    wait_for_a_container(docker_client, first, run_id)
    second = resume(runs, run_id)
    assert second.returncode == 1, second.stderr
    assert f"being driven by process {first.pid}" in second.stderr
    restart = start(program.root, runs, run_id, "--variants", "2")  # a new start of its id
    _o, restart_err = restart.communicate(timeout=120)
    assert restart.returncode == 1 and f"process {first.pid}" in restart_err, restart_err
    out, err = first.communicate(timeout=300)
    assert first.returncode == 0, err
    assert "already finished" not in err
    # the closing result lines are data (stdout); progress and messages are stderr
    assert out.startswith("finished (variant budget)") and "\nreport: " in out, out
    assert "finished (" not in err and "report: " not in err
    assert_finished_exactly_once(runs, run_id)
    with sqlite3.connect(f"file:{runs / run_id / 'run.db'}?mode=ro", uri=True) as db:
        evals = db.execute("SELECT status, attempts FROM evaluations").fetchall()
    assert evals and all(e == ("ok", 1) for e in evals), \
        f"a container of the first driver was swept under it (retried or failed): {evals}"

"""One process drives a run: the second is refused with the holder's pid; death frees the lock."""

from __future__ import annotations

import os
import signal
import subprocess
import sys

import pytest

from orchestrator.runs.lock import RunLock, RunLockedError, held

HOLD = ("import sys, time\nfrom orchestrator.runs.lock import RunLock\n"
        "lock = RunLock(sys.argv[1])\nprint('held', flush=True)\ntime.sleep(60)\n")


def hold_in_another_process(folder) -> subprocess.Popen:
    proc = subprocess.Popen([sys.executable, "-c", HOLD, str(folder)], stdout=subprocess.PIPE,
                            text=True, env={**os.environ, "PYTHONPATH": os.getcwd()})
    assert proc.stdout is not None and proc.stdout.readline().strip() == "held"
    return proc


def test_a_second_driver_is_refused_naming_the_holders_pid(tmp_path):
    proc = hold_in_another_process(tmp_path)
    try:
        assert held(tmp_path)
        with pytest.raises(RunLockedError) as caught:
            RunLock(tmp_path)
        assert f"process {proc.pid}" in str(caught.value)
        assert f"kill -TERM {proc.pid}" in str(caught.value)
    finally:
        proc.kill()
        proc.wait()


def test_the_kernel_frees_the_lock_when_its_holder_is_killed(tmp_path):
    proc = hold_in_another_process(tmp_path)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert not held(tmp_path)
    lock = RunLock(tmp_path)  # no stale lock to clean by hand
    assert (tmp_path / "run.lock").read_text().strip() == str(os.getpid())
    lock.release()
    assert not held(tmp_path)

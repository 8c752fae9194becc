"""Hostile programs that attack the limits: time, memory, processes, disk, output."""

from __future__ import annotations

import time

import pytest

from orchestrator.containers.telemetry import MAX_FILE_BYTES
from orchestrator.result import Status
from tests.hostile.kit import TRUTH

pytestmark = [pytest.mark.docker, pytest.mark.slow]


def test_an_infinite_loop_is_killed_at_the_deadline(hostile):
    start = time.monotonic()
    out = hostile("while True:\n    pass\n", timeout_s=2)
    assert out.result.status is Status.TIMEOUT
    assert time.monotonic() - start < 15


def test_a_variant_that_ignores_its_training_budget_is_stopped_at_the_cpu_cap(hostile):
    # The budget check lives in the variant's own code: only the host's CPU cap makes it hold.
    out = hostile("while True:\n    pass\n", timeout_s=60, time_budget_s=1)
    train = out.result.stages[0]
    assert out.result.status is Status.TIMEOUT
    assert "CPU-seconds" in train.error
    assert train.duration_s < 40, "stopped by the CPU cap (11.5 s), not the 60 s deadline"
    assert train.peak_memory_bytes and train.peak_memory_bytes > 1024**2


def test_a_process_ignoring_sigterm_is_killed_after_the_grace(hostile):
    out = hostile("""
        import signal, time
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        while True:
            time.sleep(0.1)
    """, timeout_s=2)
    assert out.result.status is Status.TIMEOUT
    assert out.result.stages[0].duration_s < 8


def test_a_memory_bomb_ends_as_oom(hostile):
    out = hostile("""
        hoard = []
        while True:
            hoard.append(bytearray(16 * 1024 * 1024))
    """, memory="128m")
    assert out.result.status is Status.OOM
    train = out.result.stage("train")
    assert train.peak_memory_bytes is None or train.peak_memory_bytes <= 128 * 1024**2


def test_a_fork_bomb_is_held_by_the_pids_limit(hostile):
    out = hostile("""
        import time
        while True:
            try:
                os.fork()
            except OSError:
                time.sleep(0.01)
    """, timeout_s=3, pids=32)
    assert out.result.status is Status.TIMEOUT


def test_filling_tmp_and_shm_hits_their_caps(hostile):
    out = hostile("""
        import errno
        for place in ("/tmp", "/dev/shm"):
            try:  # files under the file-size limit, so the filesystem's cap is what stops it
                for i in range(1000):
                    with open(f"{place}/fill{i}", "wb") as f:
                        for _ in range(8):
                            f.write(b"x" * 1024 * 1024)
            except OSError as exc:
                print("FULL", place, errno.errorcode[exc.errno])
            for name in os.listdir(place):
                os.remove(f"{place}/{name}")
    """, memory="768m")
    assert out.result.status is Status.OK
    assert "FULL /tmp ENOSPC" in out.log() and "FULL /dev/shm ENOSPC" in out.log()


def test_filling_the_output_folder_is_capped_and_copied_capped(hostile):
    out = hostile("""
        import errno
        try:
            for i in range(10_000):
                (OUT / f"junk{i}").write_bytes(b"x" * 1024 * 1024)
        except OSError as exc:
            print("FULL", errno.errorcode[exc.errno])
    """, disk="8m")
    assert out.result.status is Status.OK and out.result.metrics == TRUTH
    assert "FULL ENOSPC" in out.log() or "FULL EFBIG" in out.log()
    copied = sum(p.stat().st_size for p in (out.folder / "artifacts").rglob("*") if p.is_file())
    assert copied <= 8 * 1024 * 1024


def test_filling_the_disk_finds_nothing_writable(hostile):
    out = hostile("""
        for place in ("/", "/program", "/var/tmp", "/opt/selfprog/sandbox", "/home", "/etc",
                      "/data", "/usr/local", "/root"):
            try:
                with open(f"{place}/fill", "wb") as f:
                    f.write(b"x" * 1024 * 1024)
                print("LEAK wrote to", place)
            except OSError as exc:
                print("REFUSED", place, exc.strerror)
    """)
    assert out.result.status is Status.OK
    assert out.log().count("REFUSED") == 9


def test_a_stdout_flood_is_capped(hostile):
    out = hostile("""
        for i in range(200_000):
            print("flood", i, "x" * 60)
    """)
    assert out.result.status is Status.OK and out.result.metrics == TRUTH
    assert (out.folder / "train.log").stat().st_size <= MAX_FILE_BYTES + 100
    assert "output cap reached" in out.log()


def test_one_huge_line_is_dropped(hostile):
    out = hostile("""
        sys.stdout.write("y" * (64 * 1024 * 1024))
        sys.stdout.flush()
        print()
        print("after the huge line")
    """, memory="512m")
    assert out.result.status is Status.OK and out.result.metrics == TRUTH
    assert "after the huge line" in out.log()
    assert (out.folder / "train.log").stat().st_size < 10_000

"""Landlock: a restricted process reads and writes only what it was allowed; where the kernel
lacks Landlock, ``restrict`` says so and changes nothing. Every check runs in a forked child, so
the test process itself is never restricted."""

from __future__ import annotations

import os
import signal
import socket
import sys
from pathlib import Path

import pytest

from sandbox import landlock

HAS_LANDLOCK = landlock.abi_version() > 0
needs_landlock = pytest.mark.skipif(not HAS_LANDLOCK, reason="this kernel has no Landlock")


def in_child(body) -> int:
    """Run ``body()`` in a forked child; its return value (a small int) is the exit status."""
    pid = os.fork()
    if pid == 0:
        code = 99
        try:
            code = body()
        finally:
            os._exit(code)
    return os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1])


def python_paths() -> list[str]:
    return [sys.prefix, sys.base_prefix, os.path.dirname(landlock.__file__)]


@needs_landlock
def test_a_restricted_child_reads_and_writes_only_its_allowance(tmp_path):
    readable, writable, outside = tmp_path / "r", tmp_path / "w", tmp_path / "o"
    for folder in (readable, writable, outside):
        folder.mkdir()
        (folder / "f.txt").write_text("x")

    def body() -> int:
        assert landlock.restrict([*python_paths(), str(readable)], [str(writable)]) >= 1
        failures = 0
        assert (readable / "f.txt").read_text() == "x"
        (writable / "new.txt").write_text("ok")
        assert (writable / "f.txt").read_text() == "x"
        for attempt in (lambda: (outside / "f.txt").read_text(),
                        lambda: (readable / "new.txt").write_text("no"),
                        lambda: (outside / "new.txt").write_text("no"),
                        lambda: os.listdir(outside),
                        lambda: Path("/etc/hostname").read_text()):
            try:
                attempt()
                failures += 1
            except PermissionError:
                pass
        return failures

    assert in_child(body) == 0
    assert (writable / "new.txt").read_text() == "ok"
    assert not (readable / "new.txt").exists() and not (outside / "new.txt").exists()


@needs_landlock
def test_the_restriction_cannot_be_lifted_and_holds_for_children(tmp_path):
    (tmp_path / "secret").write_text("s")

    def body() -> int:
        landlock.restrict(python_paths(), [])
        landlock.restrict([*python_paths(), str(tmp_path)], [str(tmp_path)])  # only narrows
        grandchild = os.fork()
        if grandchild == 0:
            try:
                (tmp_path / "secret").read_text()
                os._exit(1)
            except PermissionError:
                os._exit(0)
        return os.waitstatus_to_exitcode(os.waitpid(grandchild, 0)[1])

    assert in_child(body) == 0


@needs_landlock
@pytest.mark.skipif(landlock.abi_version() < 6, reason="signal scoping needs Landlock ABI 6")
def test_a_restricted_child_cannot_signal_outside_its_domain():
    parent = os.getpid()

    def body() -> int:
        landlock.restrict(python_paths(), [])
        try:
            os.kill(parent, 0)
            return 1
        except PermissionError:
            return 0

    assert in_child(body) == 0


@needs_landlock
@pytest.mark.skipif(landlock.abi_version() < 4, reason="TCP rules need Landlock ABI 4")
def test_a_restricted_child_cannot_bind_or_connect_tcp():
    def body() -> int:
        landlock.restrict(python_paths(), [])
        sock = socket.socket()
        try:
            sock.bind(("127.0.0.1", 0))
            return 1
        except PermissionError:
            return 0
        finally:
            sock.close()

    assert in_child(body) == 0


def test_without_landlock_restrict_reports_zero_and_changes_nothing(tmp_path, monkeypatch):
    monkeypatch.setattr(landlock, "abi_version", lambda: 0)
    (tmp_path / "f").write_text("still readable")

    def body() -> int:
        if landlock.restrict([], []) != 0:
            return 1
        return 0 if (tmp_path / "f").read_text() == "still readable" else 2

    assert in_child(body) == 0


def test_handled_rights_grow_with_the_abi():
    assert landlock.handled_fs(1) == (1 << 13) - 1
    assert landlock.handled_fs(2) & landlock.REFER and not landlock.handled_fs(1) & landlock.REFER
    assert landlock.handled_fs(5) & landlock.IOCTL_DEV


def test_sigkill_of_a_restricted_child_still_works_from_outside():
    def body() -> int:
        landlock.restrict(python_paths(), [])
        signal.pause()
        return 0

    pid = os.fork()
    if pid == 0:
        try:
            body()
        finally:
            os._exit(0)
    os.kill(pid, signal.SIGKILL)
    assert os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1]) == -signal.SIGKILL

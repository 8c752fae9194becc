"""Host-side cgroup readers: both cgroup versions, and silence where nothing is visible."""

from __future__ import annotations

import pytest

from orchestrator.containers import cgroup
from orchestrator.containers.docker_runner import cpu_cap


def test_cgroup_v1_cpu_and_memory(tmp_path):
    cpu = tmp_path / "cpuacct" / "docker" / "abc"
    mem = tmp_path / "memory" / "docker" / "abc"
    cpu.mkdir(parents=True)
    mem.mkdir(parents=True)
    (cpu / "cpuacct.usage").write_text("2500000000\n")
    (mem / "memory.max_usage_in_bytes").write_text("1048576\n")
    assert cgroup.cpu_seconds("abc", tmp_path) == pytest.approx(2.5)
    assert cgroup.peak_memory_bytes("abc", tmp_path) == 1048576


def test_cgroup_v2_systemd_layout(tmp_path):
    scope = tmp_path / "system.slice" / "docker-abc.scope"
    scope.mkdir(parents=True)
    (scope / "cpu.stat").write_text("usage_usec 1500000\nuser_usec 1000000\n")
    (scope / "memory.peak").write_text("4096\n")
    assert cgroup.cpu_seconds("abc", tmp_path) == pytest.approx(1.5)
    assert cgroup.peak_memory_bytes("abc", tmp_path) == 4096


def test_nothing_visible_reads_as_unknown(tmp_path):
    assert cgroup.cpu_seconds("gone", tmp_path) is None
    assert cgroup.peak_memory_bytes("gone", tmp_path) is None


def test_the_cpu_cap_grows_with_budget_and_cores():
    assert cpu_cap(60, 2) == pytest.approx(190)
    assert cpu_cap(60, 1) < cpu_cap(60, 2) < cpu_cap(120, 2)

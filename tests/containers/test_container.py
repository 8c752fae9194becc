"""The one container lifecycle (``container.hardened``) on the real engine: the deadline, output
read as it comes, removal whatever happens (or when deferred), engine failures as infra errors."""

from __future__ import annotations

import time
import uuid
from pathlib import Path

import pytest

from orchestrator.containers import hardening as hard
from orchestrator.containers.container import ContainerSpec, hardened
from orchestrator.errors import InfraError
from orchestrator.program import ResourcesSection

pytestmark = pytest.mark.docker


def spec(image: str, script: str, log: Path, timeout_s: float = 30) -> ContainerSpec:
    """A small hardened container running ``sh -c script``."""
    resources = ResourcesSection(memory="64m", pids=16, disk="1m", cpus=0.5)
    small = hard.Hardening(tmp_bytes=1024**2, shm_bytes=1024**2)
    return ContainerSpec(
        what="the test container", image=image, name=f"selfprog-test-{uuid.uuid4().hex[:12]}",
        labels=hard.labels("container-test", "v-test", "test"),
        create=hard.create_kwargs(resources, small, cpus=0.5, env={}, mounts=[]),
        entrypoint=["sh", "-c"], command=[script], timeout_s=timeout_s, grace_s=0.5,
        variant_id="v-test", log=log)


def exists(client, name: str) -> bool:
    return bool(client.api.containers(all=True, filters={"name": name}))


def test_a_container_that_ignores_sigterm_past_its_deadline_is_killed_and_removed(
        docker_client, runtime_image, tmp_path):
    stubborn = spec(runtime_image, "trap '' TERM; sleep 60", tmp_path / "log", timeout_s=1)
    started = time.monotonic()
    with hardened(docker_client.api, stubborn) as box:
        box.start()
        assert box.read(lambda _chunk: False) is False, "the output ends when it is killed"
        state = box.exit_state()
        assert box.watchdog.fired
    assert state["ExitCode"] == 137, "SIGKILL after the grace, not SIGTERM"
    assert time.monotonic() - started < 15
    assert not exists(docker_client, stubborn.name)


def test_output_is_read_as_it_comes_and_the_reader_may_stop_early(docker_client, runtime_image,
                                                                   tmp_path):
    lingering = spec(runtime_image, "echo ready; sleep 60", tmp_path / "log")
    seen = bytearray()

    def until_ready(chunk: bytes) -> bool:
        seen.extend(chunk)
        return b"ready" in seen

    started = time.monotonic()
    with hardened(docker_client.api, lingering) as box:
        box.start()
        assert box.read(until_ready) is True
        assert box.state()["Running"], "read while it runs, not after it exits"
    assert time.monotonic() - started < 15
    assert not exists(docker_client, lingering.name)


def test_a_deferred_removal_leaves_the_container_until_it_is_run(docker_client, runtime_image,
                                                                  tmp_path):
    quick = spec(runtime_image, "true", tmp_path / "log")
    removals = []
    with hardened(docker_client.api, quick, defer=removals.append) as box:
        box.start()
        box.read(lambda _chunk: False)
    assert exists(docker_client, quick.name) and len(removals) == 1
    removals[0]()
    assert not exists(docker_client, quick.name)


def test_an_engine_failure_is_an_infra_error_carrying_the_variant_and_its_log(docker_client,
                                                                              tmp_path):
    missing = spec("selfprog-runtime:no-such-tag-for-this-test", "true", tmp_path / "v.log")
    with (pytest.raises(InfraError, match="engine failed in the test container") as caught,
          hardened(docker_client.api, missing)):
        pytest.fail("the block must not run without a container")
    assert caught.value.variant_id == "v-test" and caught.value.log == tmp_path / "v.log"
    assert not exists(docker_client, missing.name)


def test_a_container_our_earlier_attempt_left_under_the_name_is_replaced(docker_client,
                                                                       runtime_image, tmp_path):
    again = spec(runtime_image, "echo second", tmp_path / "log")
    left = docker_client.api.create_container(runtime_image, name=again.name,
                                              labels=again.labels, entrypoint=["true"])["Id"]
    out = bytearray()

    def collect(chunk: bytes) -> bool:
        out.extend(chunk)
        return False

    with hardened(docker_client.api, again) as box:
        assert box.id != left
        box.start()
        box.read(collect)
    assert out == b"second\n"
    assert not docker_client.api.containers(all=True, filters={"id": left})
    assert not exists(docker_client, again.name)


def test_doctor_checks_the_engine_can_apply_selfprogs_seccomp_profile(docker_client):
    from orchestrator.containers.doctor import run_checks, seccomp_check

    check = next(c for c in run_checks(min_free_gb=0) if c.name == "seccomp")
    assert check.ok and "SCMP_ARCH_" in check.detail
    missing = seccomp_check(["name=apparmor", "name=cgroupns"])
    assert not missing.ok and missing.fix

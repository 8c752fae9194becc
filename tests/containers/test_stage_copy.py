"""Copying /out on the real engine: a container that stopped is the variant's problem, not infra."""

from __future__ import annotations

import time

import pytest
from docker.errors import DockerException

from orchestrator.containers.hardening import LABEL_OWNER, owner_label
from orchestrator.containers.stage import StageSpec, _copy_out

pytestmark = pytest.mark.docker


@pytest.fixture
def no_out(docker_client, runtime_image):
    """A container of the runtime image whose ``/out`` is gone; the test decides if it runs."""
    made = []

    def make(keep_running: bool) -> str:
        script = "rm -rf /out && " + ("sleep 60" if keep_running else "true")
        container = docker_client.api.create_container(
            runtime_image, entrypoint=["sh", "-c", script], user="root",
            labels={LABEL_OWNER: owner_label()})["Id"]
        made.append(container)
        docker_client.api.start(container)
        if keep_running:
            while _has_out(docker_client, container):  # until the rm has run
                time.sleep(0.1)
        else:
            docker_client.api.wait(container, timeout=30)
        return container

    yield make
    for container in made:
        docker_client.api.remove_container(container, force=True)


def _has_out(client, container) -> bool:
    try:
        client.api.get_archive(container, "/out")[0].close()
    except DockerException:
        return False
    return True


def spec(tmp_path) -> StageSpec:
    return StageSpec(stage="train", image="", script="train.py", name="", labels={}, create={},
                     timeout_s=1, grace_s=1, variant_id="v-copy", copy_out=tmp_path, copy_cap=1000)


def test_a_failed_copy_from_a_stopped_container_is_a_problem_not_infra(docker_client, no_out,
                                                                        tmp_path):
    problems = _copy_out(docker_client.api, no_out(keep_running=False), spec(tmp_path))
    assert len(problems) == 1 and "container stopped during the copy" in problems[0]


def test_a_failed_copy_from_a_running_container_stays_an_engine_error(docker_client, no_out,
                                                                       tmp_path):
    with pytest.raises(DockerException):
        _copy_out(docker_client.api, no_out(keep_running=True), spec(tmp_path))

"""``LocalBackend`` on the real engine: it connects and never provisions, hands out ready runners,
sweeps a run's leftovers, and removes images for ``selfprog gc`` without taking one in use."""

from __future__ import annotations

import io
import subprocess
import uuid
from types import SimpleNamespace

import pytest
from docker.errors import APIError

from orchestrator.containers import engine
from orchestrator.containers.backend import LocalBackend
from orchestrator.containers.docker_runner import DockerRunner
from orchestrator.containers.hardening import LABEL_OWNER, LABEL_RUN, owner_label
from orchestrator.errors import EngineError


@pytest.fixture
def backend(docker_client):
    backend = LocalBackend.connect()
    yield backend
    backend.close()


def test_a_missing_engine_names_the_command_that_starts_one_and_nothing_is_started(monkeypatch):
    started = []
    monkeypatch.setattr(subprocess, "Popen", lambda *a, **k: started.append(a))
    monkeypatch.setattr(subprocess, "run", lambda *a, **k: started.append(a))
    monkeypatch.setenv("DOCKER_HOST", "tcp://127.0.0.1:9")
    with pytest.raises(EngineError, match=r"`selfprog engine` \(or `make engine`\)"):
        LocalBackend.connect(timeout=5)
    assert started == [], "connecting must never install or start an engine"


@pytest.mark.docker
def test_the_backend_hands_out_one_ready_runner_per_flavour(backend, runtime_image):
    runner = backend.runner(gpu=False)
    assert isinstance(runner, DockerRunner)
    assert runner.runtime == {"cpu": runtime_image}
    assert backend.runner(gpu=False) is runner
    assert backend.host_gpus() == engine.host_gpus()


@pytest.mark.docker
def test_the_backend_sweeps_everything_of_a_run(backend, docker_client, runtime_image):
    run_id = f"backend-sweep-{uuid.uuid4().hex[:8]}"
    name = f"selfprog-{run_id}"
    docker_client.api.create_container(runtime_image, name=name, entrypoint=["true"],
                                       labels={LABEL_OWNER: owner_label(), LABEL_RUN: run_id})
    assert name not in backend.sweep(), "a live orchestrator's container is kept"
    assert backend.sweep(run_id) == [name]
    assert not docker_client.api.containers(all=True, filters={"name": name})


@pytest.mark.docker
def test_gc_removes_an_image_but_not_one_in_use_nor_one_gone(backend, docker_client,
                                                              runtime_image):
    tag = f"selfprog-variant:backend-test-{uuid.uuid4().hex[:12]}"
    dockerfile = f"FROM {runtime_image}\nLABEL selfprog.test={tag}\n".encode()
    docker_client.images.build(fileobj=io.BytesIO(dockerfile), tag=tag, rm=True, pull=False)
    user = docker_client.api.create_container(tag, entrypoint=["true"],
                                              labels={LABEL_OWNER: owner_label()})["Id"]
    try:
        assert backend.remove_image(tag) is False, "a container uses it"
        assert docker_client.images.get(tag)
    finally:
        docker_client.api.remove_container(user, force=True)
    assert backend.remove_image(tag) is True
    assert backend.remove_image(tag) is False, "already gone"


def test_an_engine_refusing_an_image_removal_is_an_engine_error():
    def refuse(tag: str, noprune: bool) -> None:
        response = SimpleNamespace(status_code=500, reason="Server Error", url="http+docker://x")
        raise APIError("Server Error", response=response, explanation="driver failed")

    backend = LocalBackend(SimpleNamespace(images=SimpleNamespace(remove=refuse)))
    with pytest.raises(EngineError, match="cannot remove image selfprog-variant:x"):
        backend.remove_image("selfprog-variant:x")

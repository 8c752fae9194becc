"""Removals that race another process: a container someone else is removing counts as gone.

Docker answers 409 "removal of container ... is already in progress" while another client (a
second orchestrator's sweep, the one that made it) removes the same container. The race is hard
to provoke on a real engine at will in the stage path, so a fake low-level API stands in for it
there; two sweeps are raced on a real dead container and its volume below.
"""

from __future__ import annotations

from types import SimpleNamespace

import pytest
from docker.errors import APIError

from orchestrator.containers.container import ContainerSpec, remove
from orchestrator.containers.hardening import LABEL_OWNER, LABEL_RUN
from orchestrator.containers.sweep import sweep
from orchestrator.errors import EngineError, InfraError

IN_PROGRESS = "removal of container selfprog-x is already in progress"


def api_error(status: int, reason: str, explanation: str) -> APIError:
    response = SimpleNamespace(status_code=status, reason=reason, url="http+docker://localhost/")
    return APIError(reason, response=response, explanation=explanation)


def conflict(explanation: str) -> APIError:
    return api_error(409, "Conflict", explanation)


class FakeAPI:
    """One stale container and one stale volume; each removal raises what it is given."""

    def __init__(self, container_error: Exception | None, volume_error: Exception | None = None):
        self.errors = {"container": container_error, "volume": volume_error}
        self.calls: list[str] = []
        self.labels = {LABEL_OWNER: "elsewhere/1/1", LABEL_RUN: "race"}

    def containers(self, all: bool, filters: dict) -> list[dict]:
        return [{"Id": "c1", "Names": ["/selfprog-x"], "Labels": self.labels}]

    def volumes(self, filters: dict) -> dict:
        return {"Volumes": [{"Name": "selfprog-x-out", "Labels": self.labels}]}

    def remove_container(self, ref: str, force: bool = False, v: bool = False) -> None:
        self._remove("container", ref)

    def remove_volume(self, ref: str, force: bool = False) -> None:
        self._remove("volume", ref)

    def _remove(self, kind: str, ref: str) -> None:
        self.calls.append(ref)
        if self.errors[kind] is not None:
            raise self.errors[kind]


def test_a_sweep_counts_a_removal_already_in_progress_elsewhere_as_gone():
    api = FakeAPI(conflict(IN_PROGRESS))
    assert sweep(SimpleNamespace(api=api), run_id="race") == ["selfprog-x", "selfprog-x-out"]


def test_a_sweep_still_fails_on_a_conflict_that_is_no_race():
    api = FakeAPI(None, conflict("remove selfprog-x-out: the driver refused"))
    with pytest.raises(EngineError, match="the driver refused"):
        sweep(SimpleNamespace(api=api), run_id="race")


def test_a_volume_still_in_use_is_left_for_the_next_sweep_not_an_engine_error():
    api = FakeAPI(conflict(IN_PROGRESS), conflict("remove selfprog-x-out: volume is in use - [c1]"))
    assert sweep(SimpleNamespace(api=api), run_id="race", settle_s=0.3) == ["selfprog-x"]
    assert api.calls.count("selfprog-x-out") >= 2, "it waited and tried again"


def test_a_volume_freed_while_waiting_is_removed():
    api = FakeAPI(None, conflict("remove selfprog-x-out: volume is in use - [c1]"))
    real = api._remove

    def frees_after_two(kind: str, ref: str) -> None:
        if kind == "volume" and api.calls.count(ref) >= 2:
            api.errors["volume"] = None
        real(kind, ref)

    api._remove = frees_after_two  # type: ignore[method-assign]
    assert sweep(SimpleNamespace(api=api), run_id="race") == ["selfprog-x", "selfprog-x-out"]


@pytest.mark.docker
def test_two_sweeps_racing_on_a_real_dead_container_both_succeed(docker_client, runtime_image):
    import socket
    import threading
    import uuid

    import docker

    run = f"sweep-race-{uuid.uuid4().hex[:8]}"
    dead = {LABEL_OWNER: f"{socket.gethostname()}/999999999/1", LABEL_RUN: run}
    volume = docker_client.volumes.create(name=f"selfprog-{run}-out", labels=dead)
    created = docker_client.api.create_container(
        runtime_image, entrypoint=["sleep", "300"], labels=dead, name=f"selfprog-{run}",
        host_config=docker_client.api.create_host_config(
            mounts=[docker.types.Mount("/out", volume.name, type="volume")]))
    docker_client.api.start(created["Id"])
    results: dict[int, object] = {}

    def one(i: int) -> None:
        try:
            results[i] = sweep(docker_client, run, only_run=True)
        except Exception as exc:  # the test reports it, whatever it is
            results[i] = exc

    threads = [threading.Thread(target=one, args=(i,)) for i in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not [r for r in results.values() if isinstance(r, Exception)], results
    assert all(f"selfprog-{run}" in r for r in results.values())  # type: ignore[operator]
    label = {"label": f"{LABEL_RUN}={run}"}
    assert docker_client.api.containers(all=True, filters=label) == []
    leftover = docker_client.api.volumes(filters=label).get("Volumes") or []
    if leftover:  # left for the next sweep by all three: that one removes it
        assert sweep(docker_client, run, only_run=True) == [volume.name]


def test_a_stage_container_being_removed_elsewhere_is_not_an_infra_error():
    api = FakeAPI(conflict(IN_PROGRESS))
    spec = ContainerSpec(what="the train stage", image="", name="selfprog-x", labels={},
                         create={}, command=[], timeout_s=1, grace_s=1, variant_id="v-race")
    remove(api, "c1", spec)
    assert api.calls == ["c1"], "gone on the first answer: no retries"


def test_a_container_that_cannot_be_removed_is_an_infra_error_after_three_tries(monkeypatch):
    monkeypatch.setattr("orchestrator.containers.container.time.sleep", lambda _s: None)
    api = FakeAPI(api_error(500, "Internal Server Error", "driver failed"))
    spec = ContainerSpec(what="the train stage", image="", name="selfprog-x", labels={},
                         create={}, command=[], timeout_s=1, grace_s=1, variant_id="v-race")
    with pytest.raises(InfraError, match="cannot remove container selfprog-x") as caught:
        remove(api, "c1", spec)
    assert caught.value.variant_id == "v-race" and api.calls == ["c1"] * 3

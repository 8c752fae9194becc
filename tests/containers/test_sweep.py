"""Removals that race another process: a container someone else is removing counts as gone.

Docker answers 409 "removal of container ... is already in progress" while another client (a
second orchestrator's sweep, the one that made it) removes the same container. The race is hard
to provoke on a real engine at will, so a fake low-level API stands in for it.
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


def test_a_sweep_still_fails_on_a_conflict_that_is_no_removal_in_progress():
    api = FakeAPI(None, conflict("remove selfprog-x-out: volume is in use"))
    with pytest.raises(EngineError, match="volume is in use"):
        sweep(SimpleNamespace(api=api), run_id="race")


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

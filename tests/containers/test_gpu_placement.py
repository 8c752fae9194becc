"""GPU placement read back from the real engine: a slot's GPU ids, and no other, go into the
container's device request, and CUDA_VISIBLE_DEVICES inside numbers them from 0. The containers
are created, never started: this engine has no GPU, and creating is where the request is stored."""

from __future__ import annotations

import json
import uuid

import pytest

from orchestrator.containers import hardening as hard
from orchestrator.containers.sampler import SandboxedCompleter
from orchestrator.program import ResourcesSection

pytestmark = pytest.mark.docker


def created(docker_client, image: str, kwargs: dict) -> dict:
    """Create (not start) a container with ``kwargs`` and return its inspect document."""
    kwargs = dict(kwargs)
    host = docker_client.api.create_host_config(**kwargs.pop("host_config"))
    name = f"selfprog-gputest-{uuid.uuid4().hex[:10]}"
    box = docker_client.api.create_container(image, command=["true"], name=name,
                                             host_config=host, **kwargs)
    try:
        return docker_client.api.inspect_container(box["Id"])
    finally:
        docker_client.api.remove_container(box["Id"], force=True)


def env_of(inspect: dict) -> dict[str, str]:
    return dict(e.split("=", 1) for e in inspect["Config"]["Env"])


def test_a_slots_gpu_ids_are_the_device_request(docker_client, runtime_image):
    res = ResourcesSection(memory="1g", pids=64, disk="16m", cpus=1.0, gpus=2)
    kwargs = hard.create_kwargs(res, hard.Hardening(), cpus=1.0, env={"A": "1"}, mounts=[],
                                gpu_ids=(2, 3))
    inspect = created(docker_client, runtime_image, kwargs)
    (request,) = inspect["HostConfig"]["DeviceRequests"]
    assert request["DeviceIDs"] == ["2", "3"]
    assert request["Capabilities"] == [["gpu"]]
    assert request.get("Count", 0) == 0  # the ids, never "all"
    assert env_of(inspect)["CUDA_VISIBLE_DEVICES"] == "0,1"
    assert env_of(inspect)["A"] == "1"


def test_a_cpu_run_has_no_device_request_and_sees_no_gpu(docker_client, runtime_image):
    res = ResourcesSection(memory="1g", pids=64, disk="16m", cpus=1.0)
    inspect = created(docker_client, runtime_image,
                      hard.create_kwargs(res, hard.Hardening(), cpus=1.0, env={}, mounts=[]))
    assert not inspect["HostConfig"].get("DeviceRequests")
    assert env_of(inspect)["CUDA_VISIBLE_DEVICES"] == ""


@pytest.mark.parametrize("gpu_ids", [(), (1,)])
def test_the_self_sampler_gets_the_heads_gpu_only(docker_client, runtime_image, tmp_path,
                                                  gpu_ids):
    (tmp_path / "model.pt").write_bytes(b"never loaded on the host")
    (tmp_path / "model.json").write_text(json.dumps({"context": 64}))
    for path in (tmp_path, tmp_path / "model.pt", tmp_path / "model.json"):
        path.chmod(0o755)
    lm = SandboxedCompleter(tmp_path, client=docker_client, image=runtime_image, gpu_ids=gpu_ids)
    spec = lm._spec(runtime_image, json.dumps({"prompts": []}))
    inspect = created(docker_client, runtime_image, spec.create)
    requests = inspect["HostConfig"].get("DeviceRequests") or []
    assert [r["DeviceIDs"] for r in requests] == ([["1"]] if gpu_ids else [])
    assert env_of(inspect)["CUDA_VISIBLE_DEVICES"] == ("0" if gpu_ids else "")


def test_doctor_tells_whether_this_engine_has_the_nvidia_runtime(docker_client):
    from orchestrator.containers import doctor, engine

    check = next(c for c in doctor.run_checks(min_free_gb=0) if c.name == "gpu runtime")
    if engine.gpu_runtime(docker_client):
        assert check.ok and "has the NVIDIA runtime" in check.detail
    else:
        assert "has no NVIDIA runtime" in check.detail
        assert "NVIDIA Container Toolkit" in check.detail + check.fix
        assert check.ok == (engine.host_gpus() == 0)

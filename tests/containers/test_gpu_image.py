"""The GPU runtime image built end to end (opt-in: ``pytest -m gpu_image``; the wheels are several
GB, so CI's default run leaves it out). No GPU is needed to build it or to look inside."""

from __future__ import annotations

import time

import pytest

from orchestrator.containers import images

pytestmark = [pytest.mark.docker, pytest.mark.gpu_image]


def test_the_gpu_image_holds_a_cuda_torch_of_the_pin_and_runs_as_the_sandbox_user(docker_client):
    started = time.monotonic()
    tag = images.ensure_runtime(docker_client, "gpu")
    built_s = time.monotonic() - started
    version, cuda, uid = images.torch_inside(docker_client, tag)
    pin = images.locked_version(images.lock_file("gpu"), "torch")
    assert version.split("+")[0] == pin and "+cpu" not in version, version
    assert cuda is not None and cuda[0].isdigit(), f"torch {version} has no CUDA ({cuda})"
    assert uid == "10001"
    image = docker_client.images.get(tag)
    assert image.attrs["Config"]["User"] == "10001:10001"
    assert image.labels.get("selfprog.role") == "runtime"
    size_gb = image.attrs["Size"] / 1e9
    assert 2 < size_gb < 20, size_gb  # a CUDA torch is several GB; a CPU one is about 1.3
    print(f"{tag}: torch {version}, CUDA {cuda}, {size_gb:.2f} GB, ensure_runtime {built_s:.0f} s")

"""The runtime image: built once, found by its content tag, and what it promises inside."""

from __future__ import annotations

import shutil
import time

import pytest

from orchestrator.containers import images

pytestmark = pytest.mark.docker


def test_an_unchanged_image_is_found_not_rebuilt(docker_client, runtime_image):
    before = docker_client.images.get(runtime_image).id
    started = time.monotonic()
    again = images.ensure_runtime(docker_client, "cpu")
    assert again == runtime_image
    assert docker_client.images.get(again).id == before
    assert time.monotonic() - started < 5


def test_the_tag_follows_the_sandbox_sources(docker_client, runtime_image, tmp_path, monkeypatch):
    assert docker_client.images.get(runtime_image).labels.get("selfprog.role") == "runtime"
    shutil.copytree(images.SANDBOX, tmp_path / "sandbox",
                    ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copytree(images.IMAGES, tmp_path / "images")
    monkeypatch.setattr(images, "ROOT", tmp_path)
    monkeypatch.setattr(images, "SANDBOX", tmp_path / "sandbox")
    monkeypatch.setattr(images, "IMAGES", tmp_path / "images")
    base = images.ensure_base(docker_client, images.DEFAULT_BASE)
    assert images.runtime_tag(docker_client, "cpu", base) == runtime_image
    report = tmp_path / "sandbox" / "report.py"
    report.write_text(report.read_text() + "\n# changed\n")
    assert images.runtime_tag(docker_client, "cpu", base) != runtime_image


def test_inside_the_runtime_a_non_root_user_has_python_torch_and_the_sandbox(docker_client,
                                                                             runtime_image):
    code = (
        "import os, sys, torch, numpy, pydantic, sandbox.protocol as p;"
        "print(os.getuid(), sys.version_info[:2], torch.__version__.split('+')[0],"
        " p.PROTOCOL_VERSION)"
    )
    out = docker_client.containers.run(runtime_image, ["-c", code], entrypoint="python3",
                                       network_mode="none", remove=True)
    uid, *rest = out.decode().split(" ", 1)
    assert uid == "10001"
    assert rest[0].strip() == "(3, 11) 2.13.0 1"

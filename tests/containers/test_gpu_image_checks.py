"""The GPU flavour takes only a CUDA build of torch: the wheel is checked before any build (fast,
no download), and doctor says how an engine gets the NVIDIA runtime."""

from __future__ import annotations

import subprocess
import zipfile
from pathlib import Path

import pytest

from orchestrator.containers import doctor, images
from orchestrator.errors import ImageError

LOCK = images.lock_file("gpu")
PIN = images.locked_version(LOCK, "torch")


def make_wheel(folder: Path, version: str, requires: list[str]) -> Path:
    """A structurally real wheel: a zip whose METADATA lists ``requires``."""
    folder.mkdir(parents=True, exist_ok=True)
    wheel = folder / f"torch-{version}-cp311-cp311-manylinux_2_28_x86_64.whl"
    meta = "Metadata-Version: 2.1\nName: torch\nVersion: " + version + "\n" + "".join(
        f"Requires-Dist: {r}\n" for r in requires)
    with zipfile.ZipFile(wheel, "w") as archive:
        archive.writestr(f"torch-{version}.dist-info/METADATA", meta)
        archive.writestr("torch/__init__.py", "")
    return wheel


CUDA_DEPS = ["filelock", 'nvidia-cudnn-cu13==9.20.0.48; platform_system == "Linux"',
             "cuda-toolkit[cublas]==13.0.3; platform_system == 'Linux'"]


def test_the_lock_pins_torch():
    assert PIN and images.locked_version(images.lock_file("cpu"), "torch") == PIN


def test_a_cpu_wheel_is_refused_for_the_gpu_flavour_with_the_fix(tmp_path):
    make_wheel(tmp_path, f"{PIN}+cpu", ["filelock", "sympy>=1.13.3"])
    with pytest.raises(ImageError) as caught:
        images.check_torch_wheel(tmp_path, "gpu", LOCK)
    text = str(caught.value)
    assert "needs a CUDA build of torch" in text and "+cpu" in text
    assert "find-links" in text and "PyPI" in text


def test_a_cpu_label_is_refused_even_with_cuda_dependencies(tmp_path):
    make_wheel(tmp_path, f"{PIN}+cpu", CUDA_DEPS)
    with pytest.raises(ImageError, match=r"local version label is \+cpu"):
        images.check_torch_wheel(tmp_path, "gpu", LOCK)


def test_a_wheel_without_cuda_dependencies_is_refused(tmp_path):
    make_wheel(tmp_path, PIN, ["filelock", "sympy>=1.13.3", "networkx"])
    with pytest.raises(ImageError, match="no nvidia-\\*/cuda-\\* runtime package"):
        images.check_torch_wheel(tmp_path, "gpu", LOCK)


def test_the_cuda_builds_pass(tmp_path):
    plain = make_wheel(tmp_path / "pypi", PIN, CUDA_DEPS)
    assert images.check_torch_wheel(tmp_path / "pypi", "gpu", LOCK) == plain
    labelled = make_wheel(tmp_path / "cu", f"{PIN}+cu128", ["nvidia-cublas-cu12==12.8.4.1"])
    assert images.check_torch_wheel(tmp_path / "cu", "gpu", LOCK) == labelled


def test_the_cpu_flavour_takes_the_cpu_wheel_but_only_the_pinned_version(tmp_path):
    make_wheel(tmp_path / "ok", f"{PIN}+cpu", ["filelock"])
    images.check_torch_wheel(tmp_path / "ok", "cpu", LOCK)
    make_wheel(tmp_path / "other", "2.1.0", CUDA_DEPS)
    with pytest.raises(ImageError, match=f"pins {PIN}"):
        images.check_torch_wheel(tmp_path / "other", "gpu", LOCK)


def test_none_or_two_torch_wheels_are_refused(tmp_path):
    with pytest.raises(ImageError, match="0 torch wheels"):
        images.check_torch_wheel(tmp_path, "gpu", LOCK)
    make_wheel(tmp_path, f"{PIN}+cpu", [])
    make_wheel(tmp_path, PIN, CUDA_DEPS)
    with pytest.raises(ImageError, match="2 torch wheels"):
        images.check_torch_wheel(tmp_path, "gpu", LOCK)


def test_a_broken_wheel_is_a_clear_error(tmp_path):
    (tmp_path / f"torch-{PIN}-cp311-cp311-manylinux_2_28_x86_64.whl").write_bytes(b"not a zip")
    with pytest.raises(ImageError, match="not a readable wheel"):
        images.check_torch_wheel(tmp_path, "gpu", LOCK)


def test_the_gpu_download_ignores_local_find_links_and_config():
    environ = {"PIP_FIND_LINKS": "/opt/wheels", "PIP_EXTRA_INDEX_URL": "file:///opt/pypi/simple",
               "PIP_CONSTRAINT": "/etc/c.txt", "PIP_CERT": "/etc/ssl/ca.crt",
               "PIP_INDEX_URL": "https://mirror.example/simple", "PATH": "/usr/bin"}
    gpu = images.download_env("gpu", environ)
    assert "PIP_FIND_LINKS" not in gpu and "PIP_EXTRA_INDEX_URL" not in gpu
    assert "PIP_CONSTRAINT" not in gpu and gpu["PIP_CONFIG_FILE"] == "/dev/null"
    assert gpu["PIP_CERT"] == "/etc/ssl/ca.crt"
    assert gpu["PIP_INDEX_URL"] == "https://mirror.example/simple"
    assert images.download_env("cpu", environ) == environ


def test_the_download_accepts_every_manylinux_the_cuda_wheels_use():
    platforms = {images._PLATFORM[i + 1] for i, a in enumerate(images._PLATFORM)
                 if a == "--platform"}
    assert {"manylinux_2_27_x86_64", "manylinux_2_28_x86_64", "manylinux_2_17_x86_64"} <= platforms


def test_doctor_names_the_nvidia_container_toolkit():
    without = doctor.gpu_check(runtime=False, gpus=2)
    assert not without.ok and "NVIDIA Container Toolkit" in without.fix
    assert "refused" in without.detail
    no_gpu = doctor.gpu_check(runtime=False, gpus=0)
    assert no_gpu.ok and "no NVIDIA runtime" in no_gpu.detail
    assert "NVIDIA Container Toolkit" in no_gpu.detail
    present = doctor.gpu_check(runtime=True, gpus=1)
    assert present.ok and "has the NVIDIA runtime" in present.detail


def test_a_stamped_gpu_wheelhouse_holding_a_cpu_wheel_is_downloaded_again(tmp_path, monkeypatch):
    """A wheelhouse an older selfprog filled with the local CPU wheel is not trusted for its
    stamp: the wheel goes and pip is asked again (here pip is a stand-in that fails, so no
    multi-GB download happens in a test)."""
    folder = tmp_path / "wheelhouse" / "gpu"
    cpu = make_wheel(folder, f"{PIN}+cpu", ["filelock"])
    (folder / ".lock-sha256").write_text(images._sha256(LOCK.read_bytes()))
    monkeypatch.setattr(images, "BUILD_DIR", tmp_path)
    asked = []

    def pip(cmd, **kwargs):
        asked.append((cmd, kwargs["env"]))
        return subprocess.CompletedProcess(cmd, 1, "", "ERROR: no network in this test")

    monkeypatch.setattr(images.subprocess, "run", pip)
    with pytest.raises(ImageError, match="could not download the gpu wheelhouse"):
        images.wheelhouse("gpu")
    assert not cpu.exists() and not (folder / ".lock-sha256").exists()
    (cmd, env), = asked
    assert "download" in cmd and "PIP_FIND_LINKS" not in env

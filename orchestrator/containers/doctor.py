"""``selfprog doctor``: is this machine ready? Each check is a yes/no with the fix."""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass

import docker

from orchestrator.containers import engine, images, seccomp
from orchestrator.errors import EngineError


@dataclass(frozen=True)
class Check:
    name: str
    ok: bool
    detail: str
    fix: str = ""


def run_checks(min_free_gb: float = 10) -> list[Check]:
    checks: list[Check] = []
    try:
        client = engine.connect(timeout=10)
    except EngineError as exc:
        checks.append(Check("docker engine", False, "no engine answers",
                            f"run `make engine` (root on Debian) or start Docker yourself. {exc}"))
        client = None
    if client is not None:
        version = client.version().get("Version", "?")
        checks.append(Check("docker engine", True, f"version {version}"))
        checks.append(seccomp_check(client.info().get("SecurityOptions") or []))
        gpus = engine.host_gpus()
        checks.append(gpu_check(engine.gpu_runtime(client), gpus))
        for flavour in ("cpu", "gpu"):
            found = client.images.list(filters={"label": "selfprog.role=runtime"})
            prefix = f"selfprog-runtime:{flavour}-"
            tags = [t for img in found for t in img.tags if t.startswith(prefix)]
            current = _current_runtime(client, flavour)
            tags.sort(key=lambda t: t != current)  # the build of these sources first, if made
            wanted = flavour == "cpu" or gpus > 0
            checks.append(Check(
                f"{flavour} runtime image", bool(tags) or not wanted,
                f"built ({tags[0]})" if tags else
                "not built" + ("" if wanted else " (not needed: no NVIDIA GPU here)"),
                "" if tags or not wanted else f"run `make images{' GPU=1' * (flavour == 'gpu')}`",
            ))
        client.close()
    free = shutil.disk_usage(images.ROOT).free / 1024**3
    checks.append(Check("free disk", free >= min_free_gb, f"{free:.1f} GiB free",
                        "" if free >= min_free_gb else f"free at least {min_free_gb:.0f} GiB "
                        "(`selfprog gc`, `docker image prune`)"))
    return checks


TOOLKIT_FIX = (
    "install the NVIDIA Container Toolkit (package nvidia-container-toolkit, from NVIDIA's "
    "repository: https://docs.nvidia.com/datacenter/cloud-native/container-toolkit/latest/"
    "install-guide.html), run `nvidia-ctk runtime configure --runtime=docker` and restart the "
    "engine")
"""How a Docker engine gets the NVIDIA runtime that GPU containers need."""


def gpu_check(runtime: bool, gpus: int) -> Check:
    """Whether the engine can hand GPUs to containers: it fails only where the host has NVIDIA GPUs
    the engine cannot give (a run asking for GPUs would be refused); elsewhere it says what
    running on GPUs would need."""
    have = "has the NVIDIA runtime" if runtime else "has no NVIDIA runtime"
    if runtime:
        return Check("gpu runtime", True, f"{gpus} NVIDIA GPU(s); the engine {have}")
    if gpus == 0:
        return Check("gpu runtime", True, f"no NVIDIA GPU; the engine {have} (programs run on "
                     f"CPUs; a program asking for GPUs is refused). For GPUs: {TOOLKIT_FIX}")
    return Check("gpu runtime", False, f"{gpus} NVIDIA GPU(s), but the engine {have}: GPU "
                 "runs are refused", TOOLKIT_FIX)


def seccomp_check(security_options: list[str]) -> Check:
    """Every container gets selfprog's seccomp profile: the engine must support seccomp and the
    profile must know this host's architecture, or every run fails to start."""
    try:
        arch = seccomp.architecture()
    except ValueError as exc:
        return Check("seccomp", False, str(exc), "run selfprog on an x86-64 or arm64 host")
    if not any(opt.startswith("name=seccomp") for opt in security_options):
        return Check("seccomp", False, "the engine has no seccomp support",
                     "use an engine built with seccomp (Docker's packages are)")
    return Check("seccomp", True, f"selfprog's profile for {arch}")


def _current_runtime(client: docker.DockerClient, flavour: images.Flavour) -> str:
    """The runtime tag these sources build, from the base ``ensure_base`` would take without
    pulling ('' when no such base is here to tell)."""
    base = os.environ.get("BASE_IMAGE") or images.DEFAULT_BASE
    for candidate in (base, images.OFFLINE_BASE if base == images.DEFAULT_BASE else ""):
        try:
            return images.runtime_tag(client, flavour, candidate) if candidate else ""
        except (docker.errors.DockerException, OSError):
            continue
    return ""

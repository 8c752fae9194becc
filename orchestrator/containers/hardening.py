"""The settings every selfprog container runs with, in one place.

No network, a read-only root with size-capped tmpfs for ``/tmp``, a non-root user, every
capability dropped, no new privileges, selfprog's own seccomp allowlist (``seccomp.py``), limits
on processes, memory (swap off), CPU, open files,
file size and core dumps, a sized ``/dev/shm``, capped logs, an init process, labels that say
whose container it is. Never privileged, never the host's network, never a capability added,
never the Docker socket: nothing here can ask for them.
"""

from __future__ import annotations

import os
import re
import socket
from functools import lru_cache
from pathlib import Path
from typing import Any

import docker
from docker.types import DeviceRequest, LogConfig, Mount, Ulimit
from pydantic import BaseModel, ConfigDict, Field

from orchestrator.containers import seccomp
from orchestrator.program import MANIFEST, Program, ResourcesSection, check_host_fits

USER = "10001:10001"
LABEL_OWNER = "selfprog.owner"
LABEL_RUN = "selfprog.run"
LABEL_VARIANT = "selfprog.variant"
LABEL_STAGE = "selfprog.stage"
LABEL_NODE = "selfprog.node"
_NAME_SAFE = re.compile(r"[^a-zA-Z0-9_.-]+")


class Hardening(BaseModel):
    """Limits that are not the program's to choose."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    tmp_bytes: int = Field(default=256 * 1024**2, gt=0)
    """Size of the tmpfs at ``/tmp`` (also ``HOME``); counts against the memory limit."""
    shm_bytes: int = Field(default=256 * 1024**2, gt=0)
    """Size of ``/dev/shm``, where PyTorch's data-loader workers pass tensors."""
    nofile: int = Field(default=4096, ge=64)
    """Open files per process."""
    log_max_size: str = "32m"
    """The engine's own cap on a container's captured output (json-file driver, one file)."""


def owner_label() -> str:
    """Who made a container: ``host/pid/start-time``, so a sweep can tell a dead owner."""
    return f"{socket.gethostname()}/{os.getpid()}/{process_start(os.getpid())}"


def process_start(pid: int) -> str:
    """The start time of ``pid`` in clock ticks since boot ('' where /proc cannot tell)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return ""
    return stat.rsplit(")", 1)[1].split()[19]


def container_name(run_id: str, variant_id: str, seed: int, stage: str, attempt: int) -> str:
    """A deterministic name: the same run, variant, seed, stage and attempt give the same name."""
    run = _NAME_SAFE.sub("-", run_id)[:40]
    return f"selfprog-{run}-{variant_id}-s{seed}-{stage}-a{attempt}"


def labels(run_id: str, variant_id: str, stage: str, node: str | None = None) -> dict[str, str]:
    """Whose container it is; ``node`` names the cluster node whose agent made it."""
    out = {LABEL_OWNER: owner_label(), LABEL_RUN: run_id, LABEL_VARIANT: variant_id,
           LABEL_STAGE: stage}
    if node is not None:
        out[LABEL_NODE] = node
    return out


def readonly_bind(target: str, source: Path) -> Mount:
    """A read-only bind mount of a host folder that does NOT carry the folder's submounts: the
    engine's binds are recursive, and on Docker 20.10 a read-only bind leaves a submount
    (``/proc``, a cgroup, another run's volume) writable inside the container."""
    mount = Mount(target, str(source), type="bind", read_only=True)
    mount["BindOptions"] = {"NonRecursive": True}
    return mount


def gpu_env(gpu_ids: tuple[int, ...]) -> dict[str, str]:
    """``CUDA_VISIBLE_DEVICES`` inside a container given the host GPUs ``gpu_ids``.

    The NVIDIA runtime shows a container only the devices of its request, numbered from 0: the
    host's GPUs 2 and 3 are CUDA devices 0 and 1 inside, so the variable lists ``0..n-1`` (the host
    ids would name devices that are not there). Without GPUs it is empty: CUDA sees none.
    """
    return {"CUDA_VISIBLE_DEVICES": ",".join(str(i) for i in range(len(gpu_ids)))}


def create_kwargs(
    resources: ResourcesSection,
    hardening: Hardening,
    *,
    cpus: float,
    env: dict[str, str],
    mounts: list[Mount],
    gpu_ids: tuple[int, ...] = (),
) -> dict[str, Any]:
    """Arguments for ``client.api.create_container`` (image, command, name and labels aside);
    the ``host_config`` entry holds those for ``client.api.create_host_config``.

    Args:
        resources: the program's resources (memory, pids, disk).
        hardening: the fixed limits.
        cpus: CPU cores granted (already the smaller of the program's and the slot's).
        env: the ``SELFPROG_*`` environment.
        mounts: the only mounts: the output volume, read-only data, read-only artifacts.
        gpu_ids: the GPUs to pin; empty for a CPU run.
    """
    host: dict[str, Any] = dict(
        mounts=mounts,
        network_mode="none",
        read_only=True,
        tmpfs={"/tmp": f"size={hardening.tmp_bytes},mode=1777,nosuid,nodev"},
        cap_drop=["ALL"],
        security_opt=["no-new-privileges", seccomp.security_opt()],
        pids_limit=resources.pids,
        mem_limit=resources.memory_bytes,
        memswap_limit=resources.memory_bytes,
        nano_cpus=int(cpus * 1e9),
        ulimits=[
            Ulimit(name="nofile", soft=hardening.nofile, hard=hardening.nofile),
            Ulimit(name="fsize", soft=resources.disk_bytes, hard=resources.disk_bytes),
            Ulimit(name="core", soft=0, hard=0),
        ],
        shm_size=hardening.shm_bytes,
        log_config=LogConfig(type="json-file",
                             config={"max-size": hardening.log_max_size, "max-file": "1"}),
        init=True,
    )
    env = {**env, **gpu_env(gpu_ids)}
    if gpu_ids:
        host["device_requests"] = [
            DeviceRequest(device_ids=[str(i) for i in gpu_ids], capabilities=[["gpu"]])
        ]
    kwargs: dict[str, Any] = dict(environment=env, user=USER, working_dir="/program",
                                  stdin_open=False, tty=False, host_config=host)
    return kwargs


@lru_cache(maxsize=8)
def engine_limits(client: docker.DockerClient) -> tuple[int, int]:
    """The engine's CPU count and memory in bytes (0 where it does not say or cannot answer)."""
    try:
        info = client.info()
        return int(info.get("NCPU") or 0), int(info.get("MemTotal") or 0)
    except (docker.errors.DockerException, AttributeError, TypeError, ValueError):
        return 0, 0  # the engine's own refusal (on create) is then all there is


def check_engine_fits(client: docker.DockerClient, program: Program) -> None:
    """Refuse a program whose resources the engine cannot give, before any container: the engine
    would answer 400 on create, which is the manifest's fault, not an engine failure to retry.

    Raises:
        ConfigError: naming the key and what the engine has.
    """
    cpus, memory = engine_limits(client)
    check_host_fits(program.manifest.resources, program.root / MANIFEST,
                    cpus=cpus or None, memory=memory or None)

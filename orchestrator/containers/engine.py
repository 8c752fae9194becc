"""Finding, and where allowed provisioning, the Docker engine.

Library code only ever calls ``connect``, which finds an engine and never starts one.
Provisioning is a deliberate step of its own, ``ensure_engine`` (``selfprog engine``, ``make
engine``); it never touches an engine that already answers. When none answers and we are root on
a Debian-family system, it installs the distribution's engine (``docker.io``) and starts
``dockerd`` in the background with its log under the build folder. Anywhere else it stops with a
message that says exactly what to do.
"""

from __future__ import annotations

import logging
import os
import shutil
import subprocess
import time
from pathlib import Path

import docker
from docker.errors import DockerException

from orchestrator.errors import EngineError

BUILD_DIR = Path(os.environ.get("SELFPROG_BUILD_DIR", "build"))
log = logging.getLogger(__name__)
_HOW_TO = (
    "Install Docker Engine (https://docs.docker.com/engine/install/) and start it "
    "(`sudo systemctl start docker`), or point DOCKER_HOST at a running engine, "
    "then run this again."
)
_START = (
    "Run `selfprog engine` (or `make engine`): as root on Debian it installs and starts one; "
    "elsewhere start Docker yourself or point DOCKER_HOST at a running engine."
)


def connect(timeout: float = 30) -> docker.DockerClient:
    """A client for the engine in the environment (DOCKER_HOST or the local socket).

    Never installs or starts an engine: that is :func:`ensure_engine`'s, run on request.

    Args:
        timeout: seconds each API call may take.

    Raises:
        EngineError: no engine answers; the message says how to get one.
    """
    try:
        client = docker.from_env(timeout=timeout)
        client.ping()
    except DockerException as exc:
        raise EngineError(f"no Docker engine answers ({_short(exc)}). {_START}") from None
    return client


def engine_answers() -> bool:
    try:
        connect(timeout=5).close()
    except EngineError:
        return False
    return True


def ensure_engine(wait_s: float = 90) -> docker.DockerClient:
    """Return a client, installing and starting an engine first where we may.

    The only place selfprog provisions an engine (``selfprog engine``, ``make engine``); library
    calls connect with :func:`connect` and fail when none answers. Progress is logged at INFO.

    Args:
        wait_s: how long a started ``dockerd`` may take to answer.

    Raises:
        EngineError: no engine answers and this host is not one we provision (not root, not
            Debian-family, DOCKER_HOST pointing elsewhere), or the started engine never answered.
    """
    if engine_answers():
        return connect()
    if os.environ.get("DOCKER_HOST"):
        raise EngineError(f"DOCKER_HOST={os.environ['DOCKER_HOST']} does not answer. {_HOW_TO}")
    if os.geteuid() != 0 or not Path("/etc/debian_version").exists():
        raise EngineError(
            f"no Docker engine answers, and only root on Debian is set up here. {_HOW_TO}"
        )
    logs = BUILD_DIR / "engine"
    logs.mkdir(parents=True, exist_ok=True)
    if not shutil.which("dockerd"):
        log.info("installing the Docker engine (apt-get install docker.io) ...")
        apt_install(["docker.io"], logs / "apt.log")
    log.info("starting dockerd in the background (log: %s) ...", logs / "dockerd.log")
    with open(logs / "dockerd.log", "ab") as out:
        subprocess.Popen(
            ["dockerd"], stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
    deadline = time.monotonic() + wait_s
    while time.monotonic() < deadline:
        if engine_answers():
            log.info("the Docker engine answers.")
            return connect()
        time.sleep(0.5)
    raise EngineError(f"dockerd did not answer within {wait_s:.0f} s; see {logs / 'dockerd.log'}")


def apt_install(packages: list[str], log_path: Path) -> None:
    """``apt-get install`` as root, logging to ``log_path``; EngineError with the log's tail."""
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    with open(log_path, "ab") as out:
        for cmd in (["apt-get", "update", "-q"], ["apt-get", "install", "-y", "-q", *packages]):
            done = subprocess.run(cmd, stdout=out, stderr=subprocess.STDOUT, env=env, check=False)
            if done.returncode != 0:
                tail = log_path.read_text(errors="replace")[-800:]
                raise EngineError(f"`{' '.join(cmd)}` failed ({done.returncode}): {tail}")


def gpu_runtime(client: docker.DockerClient) -> bool:
    """Whether containers on this engine can be given NVIDIA GPUs."""
    info = client.info()
    runtimes = info.get("Runtimes") or {}
    return "nvidia" in runtimes or bool(shutil.which("nvidia-container-runtime-hook")) or bool(
        shutil.which("nvidia-container-cli")
    )


def host_gpus() -> int:
    """Number of NVIDIA GPUs this host has (0 when nvidia-smi is absent or fails)."""
    if not shutil.which("nvidia-smi"):
        return 0
    done = subprocess.run(["nvidia-smi", "-L"], capture_output=True, text=True, check=False)
    if done.returncode != 0:
        return 0
    return sum(1 for line in done.stdout.splitlines() if line.startswith("GPU "))


def _short(exc: Exception) -> str:
    text = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    return text[:200]

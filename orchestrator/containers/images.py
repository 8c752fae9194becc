"""Building the runtime images, offline when needed.

The runtime image holds Python 3.11, torch, the ``sandbox`` package and a non-root user. Its tag is
a hash of everything that went in (the Dockerfile, the package lock, the sandbox sources, the base
image), so an unchanged image is found, not rebuilt. Python packages come from a wheelhouse built
on the host; where the base image cannot be pulled, a base is built from Debian's packages.
"""

from __future__ import annotations

import hashlib
import io
import logging
import os
import subprocess
import sys
import tarfile
from collections.abc import Iterator
from pathlib import Path
from typing import Literal

import docker
from docker.errors import APIError, BuildError, DockerException, ImageNotFound

from orchestrator.containers.engine import BUILD_DIR, apt_install
from orchestrator.errors import ImageError

ROOT = Path(__file__).resolve().parents[2]
IMAGES = ROOT / "images"
SANDBOX = ROOT / "sandbox"
DEFAULT_BASE = "python:3.11-slim"
OFFLINE_BASE = "selfprog-base:bookworm"
Flavour = Literal["cpu", "gpu"]
log = logging.getLogger(__name__)
_PLATFORM = ["--python-version", "3.11", "--implementation", "cp", "--abi", "cp311",
             "--platform", "manylinux_2_28_x86_64", "--platform", "manylinux_2_17_x86_64",
             "--platform", "manylinux2014_x86_64", "--only-binary=:all:"]


def lock_file(flavour: Flavour) -> Path:
    return IMAGES / f"runtime-{flavour}.lock"


def wheelhouse(flavour: Flavour) -> Path:
    """Download the flavour's locked packages into ``build/wheelhouse/FLAVOUR`` (once).

    A stamp holding the lock's hash marks a complete download, so a second call does nothing.

    Args:
        flavour: "cpu", or "gpu" (CUDA builds, never the local CPU wheel of torch).

    Returns:
        The folder holding the wheels and ``requirements.lock``.

    Raises:
        ImageError: pip could not download a locked package.
    """
    lock = lock_file(flavour)
    folder = BUILD_DIR / "wheelhouse" / flavour
    stamp = folder / ".lock-sha256"
    digest = _sha256(lock.read_bytes())
    if stamp.is_file() and stamp.read_text() == digest:
        return folder
    folder.mkdir(parents=True, exist_ok=True)
    log.info("downloading the %s wheelhouse into %s ...", flavour, folder)
    env = dict(os.environ)
    if flavour == "gpu":
        # a local CPU-only find-links must not shadow the CUDA build of torch
        env["PIP_CONFIG_FILE"] = os.devnull
    cmd = [sys.executable, "-m", "pip", "download", "-q", "-d", str(folder), *_PLATFORM,
           "-r", str(lock)]
    done = subprocess.run(cmd, capture_output=True, text=True, env=env, check=False)
    if done.returncode != 0:
        raise ImageError(f"pip could not download the {flavour} wheelhouse: {done.stderr[-1500:]}")
    (folder / "requirements.lock").write_bytes(lock.read_bytes())
    stamp.write_text(digest)
    return folder


def ensure_base(client: docker.DockerClient, base: str) -> str:
    """Make ``base`` available locally: present, pulled, or (for the default) built offline.

    Args:
        client: a connected client.
        base: the image to build the runtime FROM.

    Returns:
        The reference to build FROM: ``base`` itself, or the offline Debian base when the default
        could not be pulled.

    Raises:
        ImageError: a base named by the user cannot be pulled, or the offline build failed.
    """
    if _exists(client, base):
        return base
    if base == DEFAULT_BASE and _exists(client, OFFLINE_BASE):
        # This host could not pull before; don't pay a failing pull on every start.
        # `docker pull python:3.11-slim` by hand makes the first branch take it again.
        return OFFLINE_BASE
    try:
        log.info("pulling %s ...", base)
        client.images.pull(base)
        return base
    except DockerException as exc:
        if base != DEFAULT_BASE:
            raise ImageError(f"cannot pull base image {base}: {_first_line(exc)}") from None
        log.info("cannot pull %s (%s); using a base built from Debian's packages instead (%s).",
                 base, _first_line(exc), OFFLINE_BASE)
    if _exists(client, OFFLINE_BASE):
        return OFFLINE_BASE
    build_offline_base()
    return OFFLINE_BASE


def build_offline_base() -> None:
    """debootstrap a bookworm base with Python 3.11 and import it as ``OFFLINE_BASE``.

    Raises:
        ImageError: debootstrap is missing and cannot be installed, or the build failed.
        EngineError: installing debootstrap failed.
    """
    logs = BUILD_DIR / "images"
    logs.mkdir(parents=True, exist_ok=True)
    if subprocess.run(["which", "debootstrap"], capture_output=True, check=False).returncode:
        if os.geteuid() != 0:
            raise ImageError("no base image can be pulled and debootstrap is missing: "
                             "install debootstrap (as root) or set BASE_IMAGE to a local image")
        apt_install(["debootstrap"], logs / "apt.log")
    log.info("building %s with debootstrap (about a minute; log: %s) ...", OFFLINE_BASE,
             logs / "base.log")
    with open(logs / "base.log", "ab") as out:
        done = subprocess.run([str(IMAGES / "build-base.sh"), OFFLINE_BASE], stdout=out,
                              stderr=subprocess.STDOUT, check=False)
    if done.returncode != 0:
        raise ImageError(f"the offline base build failed; see {logs / 'base.log'}")


def runtime_tag(client: docker.DockerClient, flavour: Flavour, base: str) -> str:
    """The tag the runtime image has when built from these sources on ``base``."""
    digest = hashlib.sha256()
    digest.update(client.images.get(base).id.encode())
    for path in [IMAGES / "runtime.Dockerfile", lock_file(flavour), *_sandbox_files()]:
        digest.update(path.relative_to(ROOT).as_posix().encode() + b"\0" + path.read_bytes())
    return f"selfprog-runtime:{flavour}-{digest.hexdigest()[:16]}"


def ensure_runtime(
    client: docker.DockerClient,
    flavour: Flavour = "cpu",
    base: str | None = None,
) -> str:
    """Build the runtime image unless an identical one exists; return its tag.

    Args:
        client: a connected client (see ``engine.connect``; no engine is started here).
        flavour: "cpu", or "gpu" for the CUDA build of torch.
        base: the image to build FROM; default ``$BASE_IMAGE``, else ``python:3.11-slim``
            (or, where that cannot be pulled, a Debian base built offline).

    Returns:
        The runtime image's content tag, ``selfprog-runtime:FLAVOUR-HASH``.

    Raises:
        ImageError: the base, the wheelhouse or the build failed (with the build's last lines).
    """
    base = ensure_base(client, base or os.environ.get("BASE_IMAGE") or DEFAULT_BASE)
    tag = runtime_tag(client, flavour, base)
    if _exists(client, tag):
        return tag
    wheels = wheelhouse(flavour)
    log.info("building %s from %s ...", tag, base)
    context = _context(wheels)
    try:
        client.images.build(fileobj=context, custom_context=True, dockerfile="runtime.Dockerfile",
                            tag=tag, buildargs={"BASE_IMAGE": base}, rm=True, forcerm=True,
                            network_mode="none", labels={"selfprog.role": "runtime"})
    except BuildError as exc:
        tail = "".join(str(c.get("stream", c.get("error", ""))) for c in exc.build_log)[-1500:]
        raise ImageError(f"building {tag} failed: {exc.msg}\n{tail}") from None
    except APIError as exc:
        raise ImageError(f"building {tag} failed: {_first_line(exc)}") from None
    client.images.get(tag).tag("selfprog-runtime", flavour)
    log.info("built %s", tag)
    return tag


def _context(wheels: Path) -> io.BytesIO:
    """An in-memory build context: the Dockerfile, the wheelhouse and the sandbox package."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        tar.add(IMAGES / "runtime.Dockerfile", arcname="runtime.Dockerfile")
        for wheel in sorted(wheels.iterdir()):
            if wheel.suffix == ".whl" or wheel.name == "requirements.lock":
                tar.add(wheel, arcname=f"wheels/{wheel.name}")
        for path in _sandbox_files():
            tar.add(path, arcname=path.relative_to(ROOT).as_posix())
    buffer.seek(0)
    return buffer


def _sandbox_files() -> Iterator[Path]:
    return (p for p in sorted(SANDBOX.rglob("*"))
            if p.is_file() and "__pycache__" not in p.parts and p.suffix in {".py", ".json"})


def _exists(client: docker.DockerClient, ref: str) -> bool:
    try:
        client.images.get(ref)
    except ImageNotFound:
        return False
    return True


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _first_line(exc: Exception) -> str:
    return (str(exc).splitlines() or [type(exc).__name__])[0][:200]

"""Building the runtime images, offline when needed.

The runtime image holds Python 3.11, torch, transformers (data-only exports of ``programs/coder``),
the ``sandbox`` package and a non-root user. Its tag is
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
from collections.abc import Iterator, Mapping
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
             # pip takes exactly the tags named: every glibc from 2.17 (the CUDA wheels use 2.27)
             *[arg for minor in range(28, 16, -1)
               for arg in ("--platform", f"manylinux_2_{minor}_x86_64")],
             "--platform", "manylinux2014_x86_64", "--only-binary=:all:"]
_LOCAL_INDEXES = ("PIP_FIND_LINKS", "PIP_EXTRA_INDEX_URL", "PIP_CONSTRAINT", "PIP_NO_INDEX")
"""Where pip may find a local torch build: a ``+cpu`` wheel there wins a ``torch==X`` pin (a local
version label sorts above the plain version), so the GPU wheelhouse is downloaded without them."""


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
        ImageError: pip could not download a locked package, or the torch wheel it took is not
            the one the flavour needs (see :func:`check_torch_wheel`); a stamped folder whose
            torch wheel fails that check is downloaded again.
    """
    lock = lock_file(flavour)
    folder = BUILD_DIR / "wheelhouse" / flavour
    stamp = folder / ".lock-sha256"
    digest = _sha256(lock.read_bytes())
    if stamp.is_file() and stamp.read_text() == digest:
        try:
            check_torch_wheel(folder, flavour, lock)
            return folder
        except ImageError as exc:  # e.g. a CPU wheel an older selfprog took for the GPU image
            log.warning("%s; downloading it again", exc)
            stamp.unlink()
    folder.mkdir(parents=True, exist_ok=True)
    log.info("downloading the %s wheelhouse into %s ...", flavour, folder)
    env = download_env(flavour, os.environ)
    for stale in folder.glob("torch-*.whl"):
        stale.unlink()  # a CPU wheel left from an earlier download would be taken again
    cmd = [sys.executable, "-m", "pip", "download", "-q", "-d", str(folder), *_PLATFORM,
           "-r", str(lock)]
    done = subprocess.run(cmd, capture_output=True, text=True, env=env, check=False)
    if done.returncode != 0:
        raise ImageError(f"pip could not download the {flavour} wheelhouse: {done.stderr[-1500:]}")
    check_torch_wheel(folder, flavour, lock)
    (folder / "requirements.lock").write_bytes(lock.read_bytes())
    stamp.write_text(digest)
    return folder


def download_env(flavour: Flavour, environ: Mapping[str, str]) -> dict[str, str]:
    """pip's environment for downloading ``flavour``'s wheelhouse.

    For the GPU flavour a local CPU-only find-links (pip's config files or a ``PIP_*`` variable)
    must not shadow the CUDA build of torch: only the index is asked (PyPI, or the user's
    ``PIP_INDEX_URL`` mirror); the certificate and timeout settings stay.
    """
    env = dict(environ)
    if flavour == "gpu":
        env["PIP_CONFIG_FILE"] = os.devnull
        for name in _LOCAL_INDEXES:
            env.pop(name, None)
    return env


def locked_version(lock: Path, package: str) -> str:
    """The version ``lock`` pins ``package`` to ('' when it does not pin it)."""
    for line in lock.read_text().splitlines():
        name, sep, version = line.split("#", 1)[0].strip().partition("==")
        if sep and name.strip().lower() == package:
            return version.strip()
    return ""


def check_torch_wheel(folder: Path, flavour: Flavour, lock: Path) -> Path:
    """The one torch wheel in ``folder``, checked before any image is built from it.

    For the GPU flavour it must be a CUDA build: no ``+cpu`` (or other non-CUDA) local version
    label, and CUDA runtime packages (``nvidia-*`` / ``cuda-*``) among its dependencies. Its
    version must be the lock's pin whatever the flavour.

    Raises:
        ImageError: no torch wheel, several, another version, or a CPU build for the GPU flavour.
    """
    wheels = sorted(folder.glob("torch-*.whl"))
    if len(wheels) != 1:
        raise ImageError(f"{folder} holds {len(wheels)} torch wheels "
                         f"({', '.join(w.name for w in wheels) or 'none'}); expected exactly one")
    wheel = wheels[0]
    version = wheel.name.split("-")[1]
    public, _, label = version.partition("+")
    pinned = locked_version(lock, "torch")
    if pinned and public != pinned:
        raise ImageError(f"{wheel.name}: torch {public}, but {lock.name} pins {pinned}")
    if flavour != "gpu":
        return wheel
    requires = _requires_dist(wheel)
    cuda = sorted({r for r in requires if r.lower().startswith(("nvidia-", "cuda-"))})
    if (label and not label.startswith("cu")) or not cuda:
        why = (f"its local version label is +{label}" if label and not label.startswith("cu")
               else "it depends on no nvidia-*/cuda-* runtime package")
        raise ImageError(
            f"the GPU image needs a CUDA build of torch, but {wheel.name} is not one ({why}): a "
            "local CPU wheel (pip's find-links, e.g. /opt/wheels) was taken for the "
            f"torch=={pinned or public} pin. Remove {wheel} and download torch from PyPI, whose "
            "default Linux wheel is the CUDA build (`selfprog images --gpu` does: it ignores "
            "PIP_FIND_LINKS and pip's config files for the GPU flavour)")
    return wheel


def _requires_dist(wheel: Path) -> list[str]:
    """The ``Requires-Dist`` names of a wheel (from its METADATA, without unpacking it)."""
    import zipfile

    try:
        with zipfile.ZipFile(wheel) as archive:
            name = next(n for n in archive.namelist()
                        if n.count("/") == 1 and n.endswith(".dist-info/METADATA"))
            text = archive.read(name).decode(errors="replace")
    except (OSError, zipfile.BadZipFile, StopIteration) as exc:
        raise ImageError(f"{wheel}: not a readable wheel ({type(exc).__name__})") from None
    return [line.split(":", 1)[1].strip().split(";")[0].split()[0]
            for line in text.splitlines() if line.startswith("Requires-Dist:")
            and line.split(":", 1)[1].strip()]


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
    if _exists(client, tag) and (flavour == "cpu" or _cuda_image(client, tag)):
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
    if flavour == "gpu":
        _check_cuda_inside(client, tag, locked_version(lock_file(flavour), "torch"))
        _CUDA_CHECKED.add(tag)
    client.images.get(tag).tag("selfprog-runtime", flavour)
    log.info("built %s", tag)
    return tag


def torch_inside(client: docker.DockerClient, tag: str) -> tuple[str, str | None, str]:
    """``(torch.__version__, torch.version.cuda, user id)`` inside the image, as its own user;
    nothing is mounted and the network is off (no GPU is needed to ask)."""
    probe = "import os, torch; print(torch.__version__, torch.version.cuda, os.getuid())"
    try:
        out = client.containers.run(tag, entrypoint=["/opt/venv/bin/python", "-c", probe],
                                    network_mode="none", remove=True, stdout=True, stderr=True)
    except DockerException as exc:
        raise ImageError(f"{tag}: cannot run python in the image: {_first_line(exc)}") from None
    version, cuda, uid = out.decode().split()[-3:]
    return version, None if cuda == "None" else cuda, uid


_CUDA_CHECKED: set[str] = set()


def _cuda_image(client: docker.DockerClient, tag: str) -> bool:
    """Whether the GPU image already under ``tag`` holds a CUDA torch (asked once a process).
    One built before the wheel was checked may hold the CPU build: it is removed (False), so
    that it is built again from a checked wheelhouse."""
    if tag in _CUDA_CHECKED:
        return True
    _version, cuda, _uid = torch_inside(client, tag)
    if cuda is None:
        log.warning("%s holds a CPU build of torch; removing it to build a CUDA one", tag)
        client.images.remove(tag, force=True)
        return False
    _CUDA_CHECKED.add(tag)
    return True


def _check_cuda_inside(client: docker.DockerClient, tag: str, pinned: str) -> None:
    """The built GPU image holds a CUDA build of the pinned torch, or it is removed.

    Raises:
        ImageError: ``torch.version.cuda`` is None inside, or the version is not the pin.
    """
    version, cuda, _uid = torch_inside(client, tag)
    if cuda is None or (pinned and version.split("+")[0] != pinned):
        client.images.remove(tag, force=True)
        raise ImageError(f"{tag} was built but holds torch {version} (CUDA {cuda}), not a CUDA "
                         f"build of torch {pinned}: the image was removed")


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

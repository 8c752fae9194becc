"""A peer problem's ``requirements.txt`` in its image: wheels from the host, installed offline.

Requirements the runtime image already satisfies (its lock pins numpy, torch, …) need nothing. The
rest are downloaded once on the host into ``build/wheelhouse/peers/<hash>`` (binary wheels for the
image's Python and platform, constrained by the runtime's lock so nothing it pins moves) and
installed with ``--no-index`` into one layer on the runtime image, built without network:
``selfprog-problem:<program>-<hash>``. Variant images of the problem are built on that.
"""

from __future__ import annotations

import hashlib
import io
import logging
import subprocess
import sys
import tarfile
from pathlib import Path

import docker
from docker.errors import APIError, BuildError, ImageNotFound
from packaging.requirements import InvalidRequirement, Requirement
from packaging.utils import canonicalize_name

from orchestrator.containers.images import _PLATFORM, BUILD_DIR, lock_file
from orchestrator.errors import ImageError
from orchestrator.program import Program

log = logging.getLogger(__name__)
_DOCKERFILE = """FROM {runtime}
USER root
COPY wheels/ /tmp/wheels/
RUN /opt/venv/bin/python -m pip install --no-index --no-cache-dir --find-links /tmp/wheels \\
        -r /tmp/wheels/requirements.txt && rm -rf /tmp/wheels
USER 10001:10001
"""


def pinned(lock: Path) -> dict[str, str]:
    out: dict[str, str] = {}
    for line in lock.read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if "==" in line:
            name, version = line.split("==", 1)
            out[canonicalize_name(name)] = version.strip()
    return out


def missing(requirements: tuple[str, ...], lock: Path) -> list[str]:
    """The requirements the runtime's lock does not satisfy.

    Raises:
        ImageError: a line that is not a requirement.
    """
    pins = pinned(lock)
    out = []
    for line in requirements:
        try:
            req = Requirement(line)
        except InvalidRequirement as exc:
            raise ImageError(f"requirements.txt: {line!r} is not a requirement ({exc})") from None
        version = pins.get(canonicalize_name(req.name))
        if version is None or not req.specifier.contains(version, prereleases=True):
            out.append(line)
    return out


def ensure(client: docker.DockerClient, runtime: str, program: Program,
           flavour: str = "cpu") -> str:
    """The image a peer problem's variants build on: ``runtime`` itself when nothing is missing.

    Raises:
        ImageError: pip could not download a requirement, or the build failed.
    """
    lock = lock_file(flavour)  # type: ignore[arg-type]
    extra = missing(program.manifest.peer.requirements, lock)
    if not extra:
        return runtime
    digest = hashlib.sha256("\n".join([runtime, *extra]).encode()).hexdigest()[:16]
    tag = f"selfprog-problem:{program.name}-{digest}"
    try:
        client.images.get(tag)
        return tag
    except ImageNotFound:  # the first run of this problem with these requirements: build it
        log.info("building %s: %d requirement(s) beyond the runtime's lock", tag, len(extra))
    except APIError as exc:
        raise ImageError(f"cannot inspect {tag}: {exc}") from None
    folder = BUILD_DIR / "wheelhouse" / "peers" / digest
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "requirements.txt").write_text("\n".join(extra) + "\n")
    log.info("downloading %s for %s into %s ...", ", ".join(extra), program.name, folder)
    done = subprocess.run([sys.executable, "-m", "pip", "download", "-q", "-d", str(folder),
                           *_PLATFORM, "-c", str(lock), "-r", str(folder / "requirements.txt")],
                          capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise ImageError(f"pip could not download the requirements of {program.name} "
                         f"({', '.join(extra)}): {done.stderr[-1500:]}")
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        _add(tar, "Dockerfile", _DOCKERFILE.format(runtime=runtime).encode())
        for path in sorted(folder.iterdir()):
            _add(tar, f"wheels/{path.name}", path.read_bytes())
    buffer.seek(0)
    try:
        client.images.build(fileobj=buffer, custom_context=True, tag=tag, rm=True, forcerm=True,
                            network_mode="none", pull=False, labels={"selfprog.role": "problem"})
    except (BuildError, APIError) as exc:
        raise ImageError(f"building {tag} failed: {exc}") from None
    return tag


def _add(tar: tarfile.TarFile, name: str, data: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size, info.mode, info.mtime = len(data), 0o644, 0
    tar.addfile(info, io.BytesIO(data))

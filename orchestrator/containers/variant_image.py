"""Thin per-variant images: the runtime image plus one layer holding the program's files.

The tag is a hash of the runtime tag and every file that goes in, so a recorded variant re-runs on
exactly the image it ran on, and an existing tag is never rebuilt. The build context is made in
memory (no temporary folder, no data folders: data never enters an image). Files are owned by
root and not writable by the sandbox user.
"""

from __future__ import annotations

import hashlib
import io
import tarfile
import threading

import docker
from docker.errors import APIError, BuildError, ImageNotFound

from orchestrator.errors import ImageError
from orchestrator.program import Program

REPOSITORY = "selfprog-variant"
_DOCKERFILE = "FROM {runtime}\nCOPY program/ /program/\n"


def image_files(program: Program, files: dict[str, str] | None = None) -> dict[str, bytes]:
    """Every file of the program's image, with ``files`` (editable files) replacing the shipped."""
    out = {rel: (program.root / rel).read_bytes() for rel in program.code_files()}
    for rel, text in (files or {}).items():
        out[rel] = text.encode()
    return out


def image_tag(runtime: str, program: Program, contents: dict[str, bytes]) -> str:
    digest = hashlib.sha256(runtime.encode() + b"\0")
    for rel in sorted(contents):
        digest.update(f"{rel}\0{len(contents[rel])}\0".encode())
        digest.update(contents[rel])
    return f"{REPOSITORY}:{program.name}-{digest.hexdigest()[:16]}"


class ImageCache:
    """Builds thin images once; remembers tags it has seen so a known tag costs no inspect.

    Safe to share between threads: two threads asking for the same tag build it once.
    """

    def __init__(self, client: docker.DockerClient):
        self.client = client
        self.known: set[str] = set()
        self.lock = threading.Lock()
        self.building: dict[str, threading.Lock] = {}

    def ensure(self, runtime: str, program: Program, files: dict[str, str] | None = None,
               variant_id: str = "") -> str:
        """Return the tag of the image for ``program`` with ``files``, building it if missing.

        Raises:
            ImageError: the engine failed to build it (the engine's fault, not the variant's).
        """
        contents = image_files(program, files)
        tag = image_tag(runtime, program, contents)
        if tag in self.known:
            return tag
        with self.lock:
            lock = self.building.setdefault(tag, threading.Lock())
        with lock:
            if tag not in self.known and not self._exists(tag):
                self._build(runtime, tag, contents, variant_id)
            self.known.add(tag)
        return tag

    def _exists(self, tag: str) -> bool:
        try:
            self.client.images.get(tag)
        except ImageNotFound:
            return False
        except APIError as exc:
            raise ImageError(f"cannot inspect {tag}: {exc}") from None
        return True

    def _build(self, runtime: str, tag: str, contents: dict[str, bytes], variant_id: str) -> None:
        context = build_context(runtime, contents)
        try:
            self.client.images.build(fileobj=context, custom_context=True, tag=tag, rm=True,
                                     forcerm=True, network_mode="none", pull=False,
                                     labels={"selfprog.role": "variant",
                                             "selfprog.variant": variant_id})
        except (BuildError, APIError) as exc:
            raise ImageError(f"building {tag} failed: {exc}", variant_id=variant_id) from None


def build_context(runtime: str, contents: dict[str, bytes]) -> io.BytesIO:
    """An in-memory tar: the Dockerfile and ``program/`` with root-owned, read-only files."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        _add(tar, "Dockerfile", _DOCKERFILE.format(runtime=runtime).encode())
        for rel in sorted(contents):
            _add(tar, f"program/{rel}", contents[rel])
    buffer.seek(0)
    return buffer


def _add(tar: tarfile.TarFile, name: str, data: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size, info.mode, info.uid, info.gid, info.mtime = len(data), 0o644, 0, 0, 0
    tar.addfile(info, io.BytesIO(data))

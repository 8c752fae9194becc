"""Moving an image between engines without a registry: ``docker save`` out, ``docker load`` in.

The runtime image is content-addressed (its tag hashes its sources) and its image ID is the hash
of its config, which ``save`` and ``load`` keep. A cluster node that lacks it receives the saved
stream and loads it; the ID is checked afterwards, and an image that loaded under the tag with
another ID is untagged again, so no job runs on it.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from typing import IO

import docker
from docker.errors import DockerException, ImageNotFound

from orchestrator.errors import EngineError, ImageError

log = logging.getLogger(__name__)


def image_id(client: docker.DockerClient, tag: str) -> str | None:
    """The ID of the image ``tag`` names on this engine, or None when it has none.

    Raises:
        EngineError: the engine could not be asked.
    """
    try:
        return str(client.images.get(tag).id)
    except ImageNotFound:
        return None
    except DockerException as exc:
        raise EngineError(f"cannot inspect image {tag}: {exc}") from None


def save_chunks(client: docker.DockerClient, tag: str, chunk_bytes: int) -> Iterator[bytes]:
    """``docker save`` of ``tag`` (with its name) as a stream of chunks.

    Raises:
        ImageError: no such image, or the engine failed to save it.
    """
    try:
        yield from client.images.get(tag).save(chunk_size=chunk_bytes, named=True)
    except DockerException as exc:
        raise ImageError(f"cannot save image {tag}: {exc}") from None


def load_verified(client: docker.DockerClient, stream: IO[bytes], tag: str, expected: str) -> None:
    """``docker load`` a saved stream, then check that ``tag`` names the image ``expected``.

    Raises:
        ImageError: the engine refused the stream, or ``tag`` now names another image (the tag
            is removed again).
    """
    try:
        client.images.load(stream)
    except DockerException as exc:
        raise ImageError(f"docker load of {tag} failed: {exc}") from None
    found = image_id(client, tag)
    if found == expected:
        return
    if found is not None:
        try:
            client.images.remove(tag, noprune=False)
        except DockerException as exc:
            log.warning("could not untag the wrong image %s: %s", tag, exc)
    raise ImageError(f"the image loaded as {tag} is {found}, not {expected}")

"""Removing containers and volumes that a dead orchestrator left behind.

Every container and volume selfprog makes carries ``selfprog.owner = host/pid/start-time``. A sweep
removes those whose owner process is gone from this host (or whose pid now names another process),
and, when asked, everything of one run. Containers of a live orchestrator, or made on another
host, are never touched.

Two sweeps may race (two ``selfprog run`` starting at once, or a sweep and the orchestrator that
made the container): a container already being removed counts as gone, and its volume, which the
engine calls "in use" until that removal ends, is waited for a few seconds and otherwise left for
the next sweep. A race is never an engine failure.
"""

from __future__ import annotations

import os
import socket
import time
from collections.abc import Callable

import docker
from docker.errors import APIError, DockerException, NotFound

from orchestrator.containers.hardening import (
    LABEL_NODE,
    LABEL_OWNER,
    LABEL_RUN,
    owner_label,
    process_start,
)
from orchestrator.errors import EngineError


def owner_alive(owner: str) -> bool:
    """Whether the orchestrator named by an owner label still runs (True when we cannot tell)."""
    host, _, rest = owner.partition("/")
    pid, _, start = rest.partition("/")
    if host != socket.gethostname() or not pid.isdigit():
        return True
    if not os.path.exists(f"/proc/{pid}"):
        return False
    return process_start(int(pid)) == start


def claimable(labels: dict[str, str]) -> bool:
    """Whether a container or volume may be replaced by this process: it is its own (an earlier
    attempt) or its orchestrator is gone. Another live orchestrator's never is."""
    owner = labels.get(LABEL_OWNER, "")
    return owner == owner_label() or not owner_alive(owner)


VOLUME_SETTLE_S = 10.0
"""How long a sweep waits for a volume whose container another process is removing."""


def sweep(client: docker.DockerClient, run_id: str | None = None, *, only_run: bool = False,
          settle_s: float = VOLUME_SETTLE_S, node: str | None = None) -> list[str]:
    """Remove selfprog's leftover containers, then volumes; return the names removed.

    Args:
        client: a client for the engine.
        run_id: also remove everything labelled with this run, whoever made it.
        only_run: remove only what ``run_id`` labels, not other dead orchestrators' leftovers.
        settle_s: how long to wait for a volume still in use by a container being removed; past
            it the volume is left for the next sweep (not an error, not in the names returned).
        node: a cluster node's identity: ``run_id`` then takes only what this node made (another
            node's live work on the same engine is not ours); dead owners' leftovers still go.

    Raises:
        EngineError: the engine could not list or remove them.
    """
    def stale(labels: dict[str, str]) -> bool:
        if (run_id is not None and labels.get(LABEL_RUN) == run_id
                and (node is None or labels.get(LABEL_NODE) == node)):
            return True
        return not only_run and not owner_alive(labels.get(LABEL_OWNER, ""))

    removed: list[str] = []
    try:
        for info in client.api.containers(all=True, filters={"label": LABEL_OWNER}):
            if stale(info.get("Labels") or {}):
                _quietly_gone(client.api.remove_container, info["Id"])
                removed.append(info["Names"][0].lstrip("/") if info.get("Names") else info["Id"])
        volumes = client.api.volumes(filters={"label": LABEL_OWNER}).get("Volumes") or []
        for info in volumes:
            if stale(info.get("Labels") or {}) and _remove_volume(client, info["Name"], settle_s):
                removed.append(info["Name"])
    except DockerException as exc:
        raise EngineError(f"sweeping leftover containers failed: {exc}") from None
    return removed


def gone(exc: Exception) -> bool:
    """Whether a removal's error says the object is gone already, or going: another process
    (a second sweep, the orchestrator that made it) is removing it at this moment."""
    if isinstance(exc, NotFound):
        return True
    return (isinstance(exc, APIError) and exc.status_code == 409
            and "already in progress" in str(exc.explanation or ""))


def in_use(exc: Exception) -> bool:
    """Whether a volume removal failed because a container still uses the volume."""
    return (isinstance(exc, APIError) and exc.status_code == 409
            and "in use" in str(exc.explanation or ""))


def _remove_volume(client: docker.DockerClient, name: str, settle_s: float) -> bool:
    """Remove a volume; False when a container still holds it after ``settle_s`` seconds."""
    deadline = time.monotonic() + settle_s
    while True:
        try:
            _quietly_gone(client.api.remove_volume, name)
            return True
        except APIError as exc:
            if not in_use(exc):
                raise
            if time.monotonic() >= deadline:
                return False
        time.sleep(0.2)


def _quietly_gone(remove: Callable[..., object], ref: str) -> None:
    """Remove ``ref`` by force; one already gone (or going) has nothing left to do."""
    try:
        remove(ref, force=True)
    except APIError as exc:
        if not gone(exc):
            raise

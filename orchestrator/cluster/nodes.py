"""The head's side of the node agents: starting them, asking them, shipping images to them.

One :class:`~orchestrator.cluster.agent.NodeAgent` per ``selfprog_slot`` a live node offers, pinned
to that node, holding an equal share of its GPUs and CPUs. ``ship_image`` streams a ``docker save``
of an image to an agent that lacks it; the agent loads it and checks its ID.
"""

from __future__ import annotations

import hashlib
import logging
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from orchestrator.cluster.agent import NodeAgent
from orchestrator.errors import EngineError, ImageError

log = logging.getLogger(__name__)

SLOT_RESOURCE = "selfprog_slot"
"""The custom resource a node offers, one unit per variant it may run at once."""
CHUNK_BYTES = 8 * 1024 * 1024
"""A ``docker save`` stream goes to a node in chunks of this size."""
READY_S = 120.0
"""How long an agent may take to start (engine check, sweep) before it is left out."""


@dataclass
class Agent:
    """The head's view of one node agent."""

    handle: Any
    node: str
    gpus: int
    cpus: float
    lost: bool = field(default=False)


def start_agents(cache: str | None = None) -> list[Agent]:
    """One agent per ``selfprog_slot`` of each live node, pinned to it, holding an equal share of
    its GPUs and CPUs; those that do not answer within ``READY_S`` are left out.

    Raises:
        EngineError: no node offers a slot, or no agent started.
    """
    import ray
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    remote = ray.remote(NodeAgent)
    planned: list[Agent] = []
    for node in ray.nodes():
        resources = node.get("Resources", {})
        slots = int(resources.get(SLOT_RESOURCE, 0)) if node.get("Alive") else 0
        for _ in range(slots):
            gpus = int(resources.get("GPU", 0)) // slots
            handle = remote.options(
                num_cpus=0, num_gpus=gpus, resources={SLOT_RESOURCE: 1},
                scheduling_strategy=NodeAffinitySchedulingStrategy(node["NodeID"], soft=False),
                max_restarts=-1, max_task_retries=0, max_concurrency=2,
            ).remote(node["NodeID"][:16], gpus, cache)
            planned.append(Agent(handle, node["NodeID"][:16], gpus,
                                 float(resources.get("CPU", 1)) / slots))
    if not planned:
        raise EngineError(f"no node of the cluster offers a {SLOT_RESOURCE!r} resource: start "
                          f"nodes with --resources '{{\"{SLOT_RESOURCE}\": N}}' (docs/cluster.md)")
    ready, errors = [], []
    for agent, ref in [(a, a.handle.hello.remote()) for a in planned]:
        try:
            ray.get(ref, timeout=READY_S)
            ready.append(agent)
        except Exception as exc:  # noqa: BLE001 - any failure to start leaves the agent out
            errors.append(f"{agent.node}: {first_line(exc)}")
            ray.kill(agent.handle, no_restart=True)
    for error in errors:
        log.warning("node agent left out: %s", error)
    if not ready:
        raise EngineError(f"no node agent started: {'; '.join(errors)[:1500]}")
    return ready


def sweep_nodes(agents: Iterable[Agent], run_id: str | None = None) -> list[str]:
    """Ask every live agent to sweep its node; an agent that is gone is skipped."""
    return _each(agents, lambda a: a.handle.sweep.remote(run_id))


def stop_nodes(agents: Iterable[Agent], run_id: str, settle_s: float) -> list[str]:
    """Ask every live agent to stop ``run_id`` on its node for good (a second method thread of
    the agent answers while its variant runs); an agent that is gone is skipped."""
    return _each(agents, lambda a: a.handle.stop_run.remote(run_id, settle_s))


def _each(agents: Iterable[Agent], call: Callable[[Agent], Any]) -> list[str]:
    import ray
    from ray.exceptions import RayError, RayTaskError

    refs = [(a, call(a)) for a in agents if not a.lost]
    removed: list[str] = []
    for agent, ref in refs:
        try:
            removed.extend(ray.get(ref, timeout=READY_S))
        except RayTaskError as exc:
            raise EngineError(f"node {agent.node}: sweep failed: {first_line(exc)}") from None
        except RayError as exc:  # gone, or not answering: its node sweeps when it returns
            log.warning("node %s did not sweep: %s", agent.node, first_line(exc))
    return removed


def answers(agent: Agent) -> bool:
    """Whether the agent answers within ``READY_S``; calls made while Ray restarts it may fail,
    so it is asked again until then, unless it can never be placed again."""
    import ray
    from ray.exceptions import ActorUnschedulableError, RayError

    end = time.monotonic() + READY_S
    while time.monotonic() < end:
        try:
            ray.get(agent.handle.hello.remote(), timeout=max(end - time.monotonic(), 0.001))
            return True
        except ActorUnschedulableError:
            return False
        except RayError:
            time.sleep(1.0)
    return False


def ship_image(handle: Any, chunks: Iterable[bytes], tag: str, image_id: str, *,
               deadline: float | None = None) -> None:
    """Stream a ``docker save`` of ``tag`` to an agent, which loads it and checks its ID.

    Does nothing when the agent's engine holds ``tag`` with that ID already.

    Args:
        deadline: a ``time.monotonic()`` past which the node is given up on.

    Raises:
        ImageError: the node could not load it, or what it loaded is not ``image_id``.
        ray.exceptions.GetTimeoutError: the deadline passed.
    """
    import ray
    from ray.exceptions import RayTaskError

    def call(ref: Any) -> Any:
        left = None if deadline is None else max(deadline - time.monotonic(), 0.001)
        return ray.get(ref, timeout=left)

    try:
        if call(handle.has_image.remote(tag, image_id)):
            return
        log.info("streaming %s to a node that lacks it ...", tag)
        digest = hashlib.sha256()
        call(handle.image_begin.remote(tag))
        for chunk in chunks:
            digest.update(chunk)
            call(handle.image_chunk.remote(chunk))
        call(handle.image_end.remote(digest.hexdigest(), image_id))
    except RayTaskError as exc:
        cause = getattr(exc, "cause", None)
        raise ImageError(str(cause) if isinstance(cause, ImageError) else first_line(exc)
                         ) from None


def first_line(exc: BaseException) -> str:
    return (str(exc).strip().splitlines() or [type(exc).__name__])[0][:300]

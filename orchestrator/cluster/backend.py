"""``RayBackend`` and ``RayRunner``: variants run on the nodes of a Ray cluster.

Ray is the trusted control plane only: the head (this process) runs the loop, the generator, the
store and the run folder; each node runs one :class:`~orchestrator.cluster.agent.NodeAgent` per
``selfprog_slot`` it offers, and variants run in the node's hardened Docker containers, never in a
Ray worker. ``RayRunner`` is a :class:`~orchestrator.runner.Runner`, so the loop does not change.

    backend = RayBackend.connect("auto")          # or an address: "10.0.0.5:6379"
    try:
        runner = backend.runner(gpu=False)        # runtime image built here, verified on nodes
        result = runner.run(request)
    finally:
        backend.close()

Failures: a dead node or agent, or one past the head-side deadline (the stage timeouts plus
``deadline_slack_s``), is an ``infra_error`` that the loop re-queues; the agent is killed (Ray
restarts it on its node, where it sweeps its predecessor's containers) and the surviving agents
sweep dead owners' leftovers. A late answer goes nowhere: the head stopped waiting for it.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from orchestrator.cluster.agent import NEED_IMAGE, NEED_TREE
from orchestrator.cluster.nodes import (
    CHUNK_BYTES,
    Agent,
    answers,
    first_line,
    ship_image,
    start_agents,
    stop_nodes,
    sweep_nodes,
)
from orchestrator.cluster.transfer import FOLDER_SLACK_BYTES, Tree, pack_tree, unpack_folder
from orchestrator.containers.backend import LocalBackend
from orchestrator.containers.image_stream import image_id as engine_image_id
from orchestrator.containers.image_stream import save_chunks
from orchestrator.containers.images import Flavour
from orchestrator.errors import ConfigError, EngineError, ImageError, InfraError, SelfprogError
from orchestrator.evolution.config import SlotsConfig
from orchestrator.evolution.slots import Slot
from orchestrator.program import Program
from orchestrator.result import Status, VariantResult
from orchestrator.runner import RunRequest

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Placement:
    """Where one request ran and what it cost."""

    variant_id: str
    seed: int
    node: str
    status: Status
    seconds: float
    """Wall time of ``RayRunner.run`` on the head."""
    node_seconds: float | None
    """Time the agent spent in its ``DockerRunner.run``; the rest is what Ray added (the
    request, shipping, the folder back, the head's checks). None when the node was lost."""


class RayBackend:
    """A Ray cluster as an :class:`orchestrator.runner.Backend`.

    Args:
        agents: the started agents (see :meth:`connect`).
        local: the head's own engine: it builds the runtime image and streams it to nodes.
        deadline_slack_s: seconds a variant may take beyond its two stage timeouts (image
            builds, transfers) before the head cuts its agent off.
    """

    def __init__(self, agents: list[Agent], local: LocalBackend, *,
                 deadline_slack_s: float = 600.0, owns_ray: bool = False):
        self.agents = agents
        self.local = local
        self.deadline_slack_s = deadline_slack_s
        self._owns_ray = owns_ray
        self._runner: RayRunner | None = None

    @classmethod
    def connect(cls, address: str | None = None, *, deadline_slack_s: float = 600.0,
                cache: str | None = None) -> RayBackend:
        """Join the cluster (unless this process already has) and start the node agents.

        Args:
            address: the head's ``host:port``; None or ``"auto"``: ``$RAY_ADDRESS`` or a
                cluster started on this machine with ``ray start --head``.
            deadline_slack_s: see the class.
            cache: the nodes' cache folder; default ``$SELFPROG_CLUSTER_CACHE`` on each node.

        Raises:
            ConfigError: Ray is not installed (``pip install 'selfprog[cluster]'``).
            EngineError: no cluster answers, no node offers a ``selfprog_slot``, or no agent
                started (the message says why), or the head has no Docker engine.
        """
        try:
            import ray
        except ImportError:
            raise ConfigError("cluster.backend = \"ray\" needs Ray: pip install "
                              "'selfprog[cluster]' on the head and every node") from None

        owns = not ray.is_initialized()
        if owns:
            try:
                ray.init(address=address or "auto", logging_level=logging.WARNING,
                         log_to_driver=False, include_dashboard=False)
            except (ConnectionError, RuntimeError, ValueError) as exc:
                raise EngineError(f"no Ray cluster answers at {address or 'auto'}: {exc} "
                                  "(start one: see docs/cluster.md)") from None
        local = LocalBackend.connect()
        try:
            agents = start_agents(cache)
        except EngineError:
            local.close()
            raise
        return cls(agents, local, deadline_slack_s=deadline_slack_s, owns_ray=owns)

    def host_gpus(self) -> int:
        """GPUs the agents hold, all nodes together (the head's own are never among them)."""
        return sum(a.gpus for a in self.agents)

    def plan_slots(self, cfg: SlotsConfig, program: Program) -> list[Slot]:
        """One slot per agent (at most ``slots.count``); a slot's ``gpu_ids`` say how many GPUs
        its agent holds, the node's own ids come from Ray at run time."""
        cpus = program.manifest.resources.cpus
        agents = self.agents[:cfg.count] if cfg.count else self.agents
        return [Slot(i, tuple(range(a.gpus)), min(cpus, a.cpus)) for i, a in enumerate(agents)]

    def runner(self, gpu: bool) -> RayRunner:
        """The runner; the runtime image of every flavour the agents need is built here and
        its ID recorded (a node lacking it gets it streamed before its first job).

        Raises:
            ImageError: the head could not build the runtime image.
        """
        if self._runner is None:
            flavours: set[Flavour] = {"gpu" if a.gpus else "cpu" for a in self.agents}
            runtime: dict[str, tuple[str, str]] = {}
            for flavour in sorted(flavours):
                tag = self.local.runner(flavour == "gpu").runtime[flavour]
                found = engine_image_id(self.local.client, tag)
                if found is None:
                    raise ImageError(f"the runtime image {tag} vanished from the head's engine")
                runtime[flavour] = (tag, found)
            self._runner = RayRunner(self.agents, self.local, runtime,
                                     deadline_slack_s=self.deadline_slack_s)
        return self._runner

    def sweep(self, run_id: str | None = None) -> list[str]:
        """Every live agent sweeps its node: dead owners' leftovers, and its own of ``run_id``.

        Raises:
            EngineError: an agent's engine failed to list or remove them.
        """
        return sweep_nodes(self.agents, run_id)

    def stop_run(self, run_id: str, *, settle_s: float = 10.0) -> list[str]:
        """Every live agent stops ``run_id`` on its node for good and removes what it made.

        Raises:
            EngineError: an agent's engine failed to list or remove them.
        """
        return stop_nodes(self.agents, run_id, settle_s)

    def close(self) -> None:
        """Stop the agents (their slots go back to the cluster) and leave it."""
        import ray

        for agent in self.agents:
            ray.kill(agent.handle, no_restart=True)
        self.local.close()
        if self._owns_ray:
            ray.shutdown()


class RayRunner:
    """Runs each request on a free node agent; safe to call from every slot thread at once.

    Args:
        agents: the agents; one request at a time each.
        local: the head's engine (the runtime image is streamed from it).
        runtime: flavour → (runtime tag, image ID).
        deadline_slack_s: seconds past the two stage timeouts before an agent is cut off.
    """

    def __init__(self, agents: list[Agent], local: LocalBackend,
                 runtime: dict[str, tuple[str, str]], *, deadline_slack_s: float = 600.0):
        self.agents = agents
        self.local = local
        self.runtime = runtime
        self.deadline_slack_s = deadline_slack_s
        self.free: queue.Queue[Agent] = queue.Queue()
        for agent in agents:
            self.free.put(agent)
        self.history: list[Placement] = []
        """Every request, in the order they ended."""
        self._trees: dict[Path, tuple[Tree, Any]] = {}
        self._lock = threading.Lock()
        self._node_locks: dict[str, threading.Lock] = {}

    def run(self, request: RunRequest) -> VariantResult:
        """Run TRAIN then EVAL on some node; write the folder here; never raise for what the
        variant did.

        Raises:
            ConfigError: the node's runner refused the program (GPUs it needs, resources).
            EngineError: no live agent is left, or none became free before the deadline.
        """
        res = request.variant.program.manifest.resources
        start = time.monotonic()
        deadline = start + 2 * res.timeout_s + self.deadline_slack_s
        agent = self._take(deadline)
        node_s: float | None = None
        try:
            reply = self._call(agent, request, deadline)
        except _Lost as lost:
            self._lose(agent, lost.why)
            result = self._failed(request, f"node {agent.node}: {lost.why}")
        except BaseException:
            self.free.put(agent)
            raise
        else:
            self.free.put(agent)
            result = self._land(request, reply)
            node_s = reply.get("seconds") if isinstance(reply.get("seconds"), float) else None
        self.history.append(Placement(request.variant.id, request.seed, agent.node, result.status,
                                      time.monotonic() - start, node_s))
        return result

    # --- one call, and what it needs first -------------------------------------------------
    def _call(self, agent: Agent, request: RunRequest, deadline: float) -> dict[str, Any]:
        import ray
        from ray.exceptions import GetTimeoutError, RayError, RayTaskError

        program = request.variant.program
        tree, tree_ref = self._tree(program)
        plain = {"run_id": request.run_id, "files": dict(request.variant.files),
                 "tree": tree.sha256, "folder": request.folder.name, "seed": request.seed,
                 "cpus": request.cpus, "runtime": {k: list(v) for k, v in self.runtime.items()}}
        try:
            for _ in range(3):
                left = max(deadline - time.monotonic(), 0.001)
                reply = ray.get(agent.handle.run.remote(plain), timeout=left)
                if reply.get("need") == NEED_TREE:
                    left = max(deadline - time.monotonic(), 0.001)
                    ray.get(agent.handle.put_tree.remote(tree.sha256, tree_ref), timeout=left)
                elif reply.get("need") == NEED_IMAGE:
                    self._ship(agent, reply["flavour"], deadline)
                else:
                    return dict(reply)
        except GetTimeoutError:
            ray.kill(agent.handle, no_restart=False)  # Ray restarts it; it sweeps on start
            raise _Lost("no answer before the head's deadline; its agent was restarted"
                        ) from None
        except RayTaskError as exc:
            cause = exc.cause if isinstance(getattr(exc, "cause", None), BaseException) else None
            if isinstance(cause, SelfprogError):
                raise cause from None
            raise InfraError(f"node {agent.node}: {first_line(exc)}",
                             variant_id=request.variant.id) from None
        except RayError as exc:  # the actor died, its node is gone, it cannot be placed again
            raise _Lost(f"agent lost ({first_line(exc)})") from None
        raise InfraError(f"node {agent.node} kept asking for what it was sent",
                         variant_id=request.variant.id)

    def _tree(self, program: Program) -> tuple[Tree, Any]:
        """The program tree, packed and put into Ray's object store once per run."""
        import ray

        with self._lock:
            if program.root not in self._trees:
                tree = pack_tree(program.root)
                self._trees[program.root] = (tree, ray.put(tree.data))
            return self._trees[program.root]

    def _ship(self, agent: Agent, flavour: str, deadline: float) -> None:
        """Stream the runtime image to the agent's node (once per node: others wait for it)."""
        tag, image_id = self.runtime[flavour]
        with self._lock:
            lock = self._node_locks.setdefault(agent.node, threading.Lock())
        with lock:
            ship_image(agent.handle, save_chunks(self.local.client, tag, CHUNK_BYTES), tag,
                       image_id, deadline=deadline)

    # --- the reply, and failures ---------------------------------------------------------
    def _land(self, request: RunRequest, reply: dict[str, Any]) -> VariantResult:
        """Check the reply as artifacts are checked, then write the folder as the local
        runner would; a malformed reply is the engine's fault (``infra_error``)."""
        variant = request.variant
        try:
            result = VariantResult.model_validate_json(reply["result"])
            folder = bytes(reply["folder"])
        except (KeyError, TypeError, ValueError) as exc:
            return self._failed(request, f"malformed reply from node {reply.get('node')}: {exc}")
        if result.variant_id != variant.id or result.seed != request.seed:
            return self._failed(request, f"node {reply.get('node')} answered for another "
                                         f"evaluation ({result.variant_id} s{result.seed})")
        cap = variant.program.manifest.resources.disk_bytes + FOLDER_SLACK_BYTES
        problems = unpack_folder(folder, request.folder, cap)
        for problem in problems:
            log.warning("variant %s: the folder from node %s: %s", variant.id, reply.get("node"),
                        problem)
        for stage in result.stages:
            if stage.log_path:
                stage.log_path = str(request.folder / Path(stage.log_path).name)
        result.folder = str(request.folder)
        (request.folder / "result.json").write_text(result.model_dump_json(indent=2) + "\n")
        return result

    def _failed(self, request: RunRequest, why: str) -> VariantResult:
        request.folder.mkdir(parents=True, exist_ok=True)
        result = VariantResult(variant_id=request.variant.id, status=Status.INFRA_ERROR,
                               folder=str(request.folder), seed=request.seed, error=why)
        (request.folder / "result.json").write_text(result.model_dump_json(indent=2) + "\n")
        return result

    def _take(self, deadline: float) -> Agent:
        while True:
            if all(a.lost for a in self.agents):
                raise EngineError("every node agent is lost: no node left to run on")
            try:
                return self.free.get(timeout=min(5.0, max(deadline - time.monotonic(), 0.001)))
            except queue.Empty:
                if time.monotonic() >= deadline:
                    raise EngineError("no node agent became free before the deadline") from None

    def _lose(self, agent: Agent, why: str) -> None:
        """In the background: the others sweep dead owners' leftovers; an agent that answers
        again (Ray restarted it) goes back to the pool, one that does not within ``READY_S`` (or
        cannot be placed again: its node is gone) is left out."""
        log.warning("node %s: %s", agent.node, why)

        def probe() -> None:
            try:
                sweep_nodes(a for a in self.agents if a is not agent)
            except EngineError as exc:
                log.warning("sweep after losing node %s: %s", agent.node, exc)
            if answers(agent):
                self.free.put(agent)
                return
            agent.lost = True
            log.warning("node %s: agent gone for good; %d left", agent.node,
                        sum(not a.lost for a in self.agents))

        threading.Thread(target=probe, daemon=True, name=f"probe-{agent.node}").start()


class _Lost(Exception):
    """The agent did not answer: dead, its node gone, or past the deadline."""

    def __init__(self, why: str):
        super().__init__(why)
        self.why = why

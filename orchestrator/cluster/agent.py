"""``NodeAgent``: one Ray actor per slot on a node, running variants on that node's Docker engine.

The agent is trusted control-plane code: it never imports or runs a variant's code. It wraps the
node's own :class:`~orchestrator.containers.docker_runner.DockerRunner`, so a variant runs in the
same hardened containers as on one machine (cgroup watchdog, OOM detection, copy-out). On start it
checks its engine (and the GPU runtime when it owns GPUs) and sweeps what dead orchestrators and
dead agents left on the node. A request is plain data; the reply is the result record as JSON plus
a capped tar of the variant's folder. What the agent lacks (the runtime image, the program tree)
it says, and the head sends it (:mod:`orchestrator.cluster.backend`).
"""

from __future__ import annotations

import hashlib
import logging
import os
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

from orchestrator.cluster.transfer import FOLDER_SLACK_BYTES, pack_folder, unpack_tree
from orchestrator.containers import engine, sweep
from orchestrator.containers.docker_runner import DockerRunner
from orchestrator.containers.image_stream import image_id as engine_image_id
from orchestrator.containers.image_stream import load_verified
from orchestrator.errors import EngineError, ImageError
from orchestrator.program import Program
from orchestrator.runner import RunRequest, Variant

log = logging.getLogger(__name__)
NEED_IMAGE = "image"
NEED_TREE = "tree"


def cache_root() -> Path:
    """Where a node keeps program trees and its scratch folders: ``$SELFPROG_CLUSTER_CACHE``, else
    ``~/.cache/selfprog/cluster``."""
    return Path(os.environ.get("SELFPROG_CLUSTER_CACHE")
                or Path.home() / ".cache" / "selfprog" / "cluster")


class NodeAgent:
    """One slot of a node.

    Args:
        node: the node's identity (its Ray node id): labels every container the agent makes, so
            a sweep of a run's leftovers on a shared engine takes only this node's.
        gpus: GPUs the actor was given; the engine must have the NVIDIA runtime when > 0.
        cache: the node's cache folder; default :func:`cache_root`.

    Raises:
        EngineError: no engine answers on the node, or it has no GPU runtime though GPUs were
            given (Ray restarts the actor; the head sees it never become ready).
    """

    def __init__(self, node: str, gpus: int = 0, cache: str | None = None):
        self.node = node
        self.client = engine.connect()
        if gpus and not engine.gpu_runtime(self.client):
            raise EngineError(f"node {node}: {gpus} GPU(s) given but the engine has no NVIDIA "
                              "runtime (install the NVIDIA Container Toolkit)")
        self.cache = Path(cache) if cache else cache_root()
        self.runner = DockerRunner(self.client, node=node)
        self.verified: dict[str, str] = {}
        """Runtime tags whose image ID was checked here, and that ID."""
        self.swept = sweep.sweep(self.client)  # dead owners' leftovers, any node's, this host
        self._load: tuple[Any, Any, str] | None = None

    def hello(self) -> dict[str, Any]:
        """Who answers: the node, the process, the GPU ids Ray gave it, what it swept."""
        import ray

        return {"node": self.node, "pid": os.getpid(), "swept": self.swept,
                "gpu_ids": [int(g) for g in ray.get_gpu_ids()]}

    def sweep(self, run_id: str | None = None) -> list[str]:
        """Remove dead owners' leftovers and, when given, this node's containers of ``run_id``."""
        return sweep.sweep(self.client, run_id, node=self.node)

    def stop_run(self, run_id: str, settle_s: float) -> list[str]:
        """Stop ``run_id`` on this node for good (SIGINT/SIGTERM on the head): this agent starts
        no container or volume any more, the creations in flight end, then everything of the
        run this node made is removed. It answers while a variant runs (a second thread)."""
        from orchestrator.containers.gate import CREATION

        CREATION.close()
        return sweep.sweep(self.client, run_id, only_run=True, settle_s=settle_s, node=self.node)

    # --- one variant -----------------------------------------------------------------------
    def run(self, request: dict[str, Any]) -> dict[str, Any]:
        """Run one variant; the request and the reply are plain data.

        Request keys: ``run_id``, ``files``, ``tree`` (sha256 of the program tree), ``folder``
        (the name of the variant's folder), ``seed``, ``cpus``, ``runtime`` (flavour → [tag,
        image id]).

        Returns:
            ``{"need": "image"|"tree", ...}`` when the node lacks one (nothing ran), else
            ``{"result": JSON, "folder": tar bytes, "node": ..., "gpu_ids": [...], "seconds":
            time in the runner}``.
        """
        import ray

        gpu_ids = tuple(int(g) for g in ray.get_gpu_ids())
        flavour = "gpu" if gpu_ids else "cpu"
        tag, image_id = request["runtime"][flavour]
        if not self._image_ok(tag, image_id):
            return {"need": NEED_IMAGE, "tag": tag, "flavour": flavour}
        root = self.cache / "programs" / request["tree"]
        if not root.is_dir():
            return {"need": NEED_TREE, "tree": request["tree"]}
        self.runner.runtime[flavour] = tag
        program = Program.load(root)
        work = self.cache / "work" / self.node / request["run_id"]
        work.mkdir(parents=True, exist_ok=True)
        folder = Path(tempfile.mkdtemp(dir=work, prefix=f"{request['folder']}-"))
        try:
            run = RunRequest(variant=Variant(program, dict(request["files"])),
                             run_id=request["run_id"], folder=folder, seed=int(request["seed"]),
                             gpu_ids=gpu_ids, cpus=request.get("cpus"))
            start = time.monotonic()
            result = self.runner.run(run)
            seconds = time.monotonic() - start
            cap = program.manifest.resources.disk_bytes + FOLDER_SLACK_BYTES
            return {"result": result.model_dump_json(), "folder": pack_folder(folder, cap),
                    "node": self.node, "gpu_ids": list(gpu_ids), "seconds": seconds}
        finally:
            shutil.rmtree(folder, ignore_errors=True)

    def put_tree(self, sha256: str, data: bytes) -> str:
        """Unpack a program tree into the node's cache (once per run and node)."""
        return str(unpack_tree(data, sha256, self.cache))

    # --- the runtime image, streamed from the head -----------------------------------------
    def _image_ok(self, tag: str, image_id: str) -> bool:
        if self.verified.get(tag) == image_id:
            return True
        if engine_image_id(self.client, tag) != image_id:
            return False
        self.verified[tag] = image_id
        return True

    def has_image(self, tag: str, image_id: str) -> bool:
        """Whether the engine holds ``tag`` with exactly this image ID."""
        return self._image_ok(tag, image_id)

    def image_begin(self, tag: str) -> None:
        """Start receiving a ``docker save`` stream for ``tag`` (into a file on the node)."""
        self._abort_load()
        self.cache.mkdir(parents=True, exist_ok=True)
        handle = tempfile.NamedTemporaryFile(  # noqa: SIM115 - kept open across calls
            dir=self.cache, prefix=".image-", suffix=".tar")
        self._load = (handle, hashlib.sha256(), tag)

    def image_chunk(self, data: bytes) -> int:
        """One chunk of the stream, in order; returns the bytes received so far."""
        if self._load is None:
            raise ImageError(f"node {self.node}: an image chunk came with no image_begin")
        handle, digest, _tag = self._load
        handle.write(data)
        digest.update(data)
        return int(handle.tell())

    def image_end(self, sha256: str, image_id: str) -> str:
        """``docker load`` the stream and check it: the bytes' hash, then the image ID.

        Raises:
            ImageError: the stream was damaged, the engine refused it, or the loaded image's
                ID is not ``image_id`` (its tag is removed again: no job runs on it).
        """
        if self._load is None:
            raise ImageError(f"node {self.node}: image_end with no image_begin")
        handle, digest, tag = self._load
        self._load = None
        with handle:
            if digest.hexdigest() != sha256:
                raise ImageError(f"node {self.node}: the stream of {tag} arrived damaged")
            handle.seek(0)
            try:
                load_verified(self.client, handle, tag, image_id)
            except ImageError as exc:
                raise ImageError(f"node {self.node}: {exc}") from None
        self.verified[tag] = image_id
        return tag

    def _abort_load(self) -> None:
        if self._load is not None:
            self._load[0].close()
            self._load = None


"""``DockerRunner``: one variant through TRAIN and EVAL, each in its own hardened container.

TRAIN runs the variant's image (its entrypoint, the train data read-only, ``/out`` a size-capped
tmpfs volume). Its artifacts are copied, capped, into the variant's folder. EVAL runs the
ORIGINAL program's image (its evaluator, the held-out data read-only, the copied artifacts
read-only at ``/out``). Only EVAL's ``result`` becomes the variant's metrics.

Split evaluation: a program with a model-side script (``serve.py`` beside its evaluator) never has
its model loaded by the evaluator. A MODEL SERVER container (the original image again, running
``python -m sandbox.serve``, the artifacts read-only at ``/out``, no ``/data``) starts beside EVAL,
under the same deadline, and the two share only a unix socket on a per-evaluation tmpfs volume at
``/sock``. The server is removed with EVAL.

Peer programs (OpenEvolve, ShinkaEvolve; ``orchestrator.peers.runtime``, docs/peers.md): a variant
that breaks the region rule is refused before any container; TRAIN and EVAL run selfprog's
trusted peer scripts; in split isolation the server is the variant's program server.

Writes into ``request.folder``: ``train.log``, ``eval.log``, ``serve.log`` (split evaluation),
``events.jsonl``, ``artifacts/`` and ``result.json``. Safe to call from several threads at once.
"""

from __future__ import annotations

import os
import shutil
import threading
from collections.abc import Callable
from pathlib import Path
from typing import IO

import docker
from docker.models.volumes import Volume
from docker.types import Mount

from orchestrator.containers import hardening as hard
from orchestrator.containers import problem_image
from orchestrator.containers.container import ContainerSpec, hardened
from orchestrator.containers.engine import gpu_runtime
from orchestrator.containers.gate import CREATION
from orchestrator.containers.images import Flavour, ensure_runtime
from orchestrator.containers.stage import Stage, StageOutcome, StageSpec, run_stage
from orchestrator.containers.sweep import claimable
from orchestrator.containers.variant_image import ImageCache
from orchestrator.errors import ConfigError, GpuUnavailableError, ImageError, InfraError
from orchestrator.peers import runtime as peers
from orchestrator.program import Program
from orchestrator.result import StageResult, Status, VariantResult
from orchestrator.runner import RunRequest, cpu_cap

OUT = "/out"
DATA = "/data"
SOCK = "/sock"
SERVE_SCRIPT = "serve.py"
"""A program's model-side script, by convention beside its evaluator; when present, EVAL splits."""
SERVE_ENTRYPOINT = ["/opt/venv/bin/python", "-m", "sandbox.serve"]
SERVE_LOG_BYTES = 256 * 1024
"""How much of the model server's own output ``serve.log`` keeps (its tail)."""


class DockerRunner:
    """The real ``orchestrator.runner.Runner``.

    Args:
        client: a client for the engine; reused for every call (no per-variant connection).
        hardening: fixed container limits.
        retries: extra attempts after an engine failure before the result is ``infra_error``.
        grace_s: seconds between SIGTERM and SIGKILL at a deadline.
        linger_s: longest the TRAIN harness waits for its artifacts to be copied.
        runtime: runtime image tags by flavour, when already known (saves a look-up).
        node: a cluster node's identity, labelled on everything made (``selfprog.node``) so a
            node agent sweeping a run's leftovers takes only its own node's.
    """

    def __init__(self, client: docker.DockerClient, *, hardening: hard.Hardening | None = None,
                 retries: int = 2, grace_s: float = 2.0, linger_s: float = 120.0,
                 runtime: dict[str, str] | None = None, node: str | None = None):
        self.client = client
        self.hardening = hardening or hard.Hardening()
        self.retries = retries
        self.grace_s = grace_s
        self.linger_s = linger_s
        self.images = ImageCache(client)
        self.runtime: dict[str, str] = dict(runtime or {})
        self._lock = threading.Lock()
        self._gpu_runtime: bool | None = None
        self.node = node

    def run(self, request: RunRequest) -> VariantResult:
        """Run TRAIN then EVAL; write the folder; never raise for what the variant did.

        Raises:
            GpuUnavailableError: the program needs GPUs and this engine has none.
            ConfigError: the slot owns fewer GPUs than the program needs, or the engine has
                fewer CPUs or less memory than it asks for.
        """
        hard.check_engine_fits(self.client, request.variant.program)
        gpu_ids = self._gpu_ids(request)
        request.folder.mkdir(parents=True, exist_ok=True)
        error: InfraError | None = None
        refused = peers.refusal(request.variant.program, request.variant.files)
        if refused is not None:  # a peer's rule broken: refused before any container
            result = VariantResult(variant_id=request.variant.id, status=Status.INVALID,
                                   folder=str(request.folder), seed=request.seed, error=refused)
            (request.folder / "result.json").write_text(result.model_dump_json(indent=2) + "\n")
            return result
        for attempt in range(self.retries + 1):
            try:
                result = self._attempt(request, gpu_ids, attempt)
                break
            except InfraError as exc:
                error = exc
        else:
            result = VariantResult(variant_id=request.variant.id, status=Status.INFRA_ERROR,
                                   folder=str(request.folder), seed=request.seed,
                                   error=f"engine failed {self.retries + 1} times: {error}")
        if not peers.protected(request.variant.program):
            result.protected = False  # isolation = "shared": labelled wherever it is shown
        (request.folder / "result.json").write_text(result.model_dump_json(indent=2) + "\n")
        return result

    def _gpu_ids(self, request: RunRequest) -> tuple[int, ...]:
        program = request.variant.program
        needed = program.manifest.resources.gpus
        if self._gpu_runtime is None and (needed or request.gpu_ids):
            self._gpu_runtime = gpu_runtime(self.client)
        if not needed:
            # gpus = 0 means "needs none", not "may use none": a slot that owns GPUs lends them,
            # and a program that sees CUDA uses it (codelm does). Without a GPU runtime it runs
            # on the CPU, as it would anywhere else.
            return tuple(request.gpu_ids) if self._gpu_runtime else ()
        if not self._gpu_runtime:
            raise GpuUnavailableError(
                f"program {program.name!r} needs {needed} GPU(s) but this Docker engine has no "
                "NVIDIA runtime (install the NVIDIA Container Toolkit), or set resources.gpus = 0",
                variant_id=request.variant.id)
        if len(request.gpu_ids) < needed:
            raise ConfigError(f"program {program.name!r} needs {needed} GPU(s); the slot owns "
                              f"{list(request.gpu_ids)}", variant_id=request.variant.id)
        return request.gpu_ids[:needed]

    def _runtime_tag(self, flavour: Flavour) -> str:
        with self._lock:
            if flavour not in self.runtime:
                self.runtime[flavour] = ensure_runtime(self.client, flavour)
            return self.runtime[flavour]

    def _attempt(self, request: RunRequest, gpu_ids: tuple[int, ...],
                 attempt: int) -> VariantResult:
        variant, folder = request.variant, request.folder
        program = variant.program
        try:
            runtime = self._runtime_tag("gpu" if gpu_ids else "cpu")
            if peers.is_peer(program):  # its requirements.txt, installed offline
                runtime = problem_image.ensure(self.client, runtime, program,
                                               "gpu" if gpu_ids else "cpu")
            train_image = self.images.ensure(runtime, program, variant.files, variant.id)
            eval_image = self.images.ensure(runtime, program, None, "seed")
        except ImageError as exc:
            raise InfraError(str(exc), variant_id=variant.id) from None
        artifacts = folder / "artifacts"
        shutil.rmtree(artifacts, ignore_errors=True)
        artifacts.mkdir()
        record = VariantResult(variant_id=variant.id, status=Status.OK, image=train_image,
                               folder=str(folder), seed=request.seed)
        cleanup = _Background()
        try:
            with (folder / "events.jsonl").open("w", encoding="utf-8") as events:
                evaluation = self._stages(request, record, gpu_ids, attempt, (train_image,
                                          eval_image), events, cleanup)
        finally:
            cleanup.join()  # TRAIN's container and volume, removed while EVAL ran
        if evaluation is not None:
            record.stages.append(evaluation.result)
            record.status, record.error, record.metrics = judge(program, evaluation)
        return record

    def _stages(self, request: RunRequest, record: VariantResult, gpu_ids: tuple[int, ...],
                attempt: int, images: tuple[str, str], events: IO[str], cleanup: _Background,
                ) -> StageOutcome | None:
        artifacts, folder = request.folder / "artifacts", request.folder
        volume = self._volume(request, attempt)
        removals: list[Callable[[], None]] = []
        try:
            train = run_stage(self.client, self._spec(request, "train", images[0], gpu_ids,
                                                      attempt, volume, artifacts),
                              folder / "train.log", events, defer=removals.append)
        finally:
            cleanup.run(*removals, lambda: _remove_volume(volume, request.variant.id))
        record.telemetry = dict(train.stream.telemetry)
        record.stages.append(_with_problems(train))
        if train.result.status is not Status.OK:
            record.status, record.error = train.result.status, f"train: {train.result.error}"
            return None
        program = request.variant.program
        if not ((program.root / SERVE_SCRIPT).is_file() or peers.serves(program)):
            return run_stage(self.client, self._spec(request, "eval", images[1], gpu_ids,
                                                     attempt, None, artifacts),
                             folder / "eval.log", events)
        return self._split_eval(request, images[1], gpu_ids, attempt, events, cleanup)

    def _split_eval(self, request: RunRequest, image: str, gpu_ids: tuple[int, ...], attempt: int,
                    events: IO[str], cleanup: _Background) -> StageOutcome:
        """EVAL with the model in its own container: the server starts first (it imports torch
        while EVAL starts), both share only the socket volume, and both go when EVAL ends."""
        folder, artifacts = request.folder, request.folder / "artifacts"
        sock = self._volume(request, attempt, "sock", 16 * 1024 * 1024)
        removals: list[Callable[[], None]] = []
        eval_removals: list[Callable[[], None]] = []
        server_id: str | None = None
        try:
            spec = self._spec(request, "eval", image, gpu_ids, attempt, None, artifacts, sock)
            with hardened(self.client.api, self._server(request, image, attempt, sock, artifacts),
                          removals.append) as server:
                starting = _Started(server.start)  # overlaps EVAL's own create and start
                server_id = server.id
                try:
                    outcome = run_stage(self.client, spec, folder / "eval.log", events,
                                        defer=eval_removals.append)
                finally:
                    starting.join()
                starting.check()  # the engine failed to start it: not the variant's fault
                return outcome
        finally:
            # EVAL's container and the server's go at once; the socket volume after both
            eval_gone = threading.Event()

            def remove_eval() -> None:
                try:
                    for task in eval_removals:
                        task()
                finally:
                    eval_gone.set()

            def after_eval() -> None:
                eval_gone.wait()

            def keep_log() -> None:  # read before the server goes, off EVAL's path
                if server_id is not None:
                    _keep_log(self.client.api, server_id, folder / "serve.log")

            cleanup.run(remove_eval)
            cleanup.run(keep_log, *removals, after_eval,
                        lambda: _remove_volume(sock, request.variant.id))

    def _server(self, request: RunRequest, image: str, attempt: int, sock: Volume,
                artifacts: Path) -> ContainerSpec:
        """The model server: the original image, the artifacts read-only, the socket, no data,
        no GPU, EVAL's deadline."""
        program = request.variant.program
        res = program.manifest.resources
        mounts = [Mount(OUT, str(artifacts.resolve()), type="bind", read_only=True),
                  Mount(SOCK, sock.name, type="volume")]
        env = {"SELFPROG_STAGE": "serve", "SELFPROG_OUT": OUT,
               "SELFPROG_SOCKET": f"{SOCK}/model.sock", "SELFPROG_PROGRAM": program.name,
               "SELFPROG_SERVE_REQUEST_S": f"{res.timeout_s:g}", "PYTHONHASHSEED": "0"}
        cpus = min(res.cpus, request.cpus) if request.cpus else res.cpus
        return ContainerSpec(
            what="the model server", image=image,
            name=hard.container_name(request.run_id, request.variant.id, request.seed, "serve",
                                     attempt),
            labels=hard.labels(request.run_id, request.variant.id, "serve", self.node),
            create=hard.create_kwargs(res, self.hardening, cpus=cpus, env=env, mounts=mounts),
            command=[peers.SERVE_SCRIPT if peers.is_peer(program) else SERVE_SCRIPT],
            entrypoint=SERVE_ENTRYPOINT, timeout_s=res.timeout_s,
            grace_s=self.grace_s, variant_id=request.variant.id,
            log=request.folder / "serve.log")

    def _volume(self, request: RunRequest, attempt: int, what: str = "out",
                size: int | None = None) -> Volume:
        name = hard.container_name(request.run_id, request.variant.id, request.seed, what, attempt)
        size = size or request.variant.program.manifest.resources.disk_bytes
        try:
            with CREATION.creating(f"the {what} volume", request.variant.id):
                self._claim_volume(name, request.variant.id)
                return self.client.volumes.create(
                    name=name, driver="local",
                    labels=hard.labels(request.run_id, request.variant.id, what,
                                       self.node),
                    driver_opts={"type": "tmpfs", "device": "tmpfs",
                                 "o": f"size={size},uid=10001"})
        except docker.errors.DockerException as exc:
            raise InfraError(f"cannot create the {what} volume: {exc}",
                             variant_id=request.variant.id) from None

    def _claim_volume(self, name: str, variant_id: str) -> None:
        """Creating a volume whose name exists returns the old one: remove it first if it is ours
        or a dead orchestrator's; refuse if a live one's (two runs would share one /out)."""
        try:
            labels = self.client.api.inspect_volume(name).get("Labels") or {}
        except docker.errors.NotFound:
            return
        if not claimable(labels):
            raise ConfigError(f"volume {name} belongs to a live orchestrator "
                              f"({labels.get(hard.LABEL_OWNER)}): two runs share this run id; "
                              "give this one another", variant_id=variant_id)
        self.client.api.remove_volume(name, force=True)

    def _spec(self, request: RunRequest, stage: Stage, image: str, gpu_ids: tuple[int, ...],
              attempt: int, volume: Volume | None, artifacts: Path,
              sock: Volume | None = None) -> StageSpec:
        program = request.variant.program
        res = program.manifest.resources
        data = program.data_path(stage)
        mounts = [Mount(OUT, volume.name, type="volume") if volume is not None
                  else hard.readonly_bind(OUT, artifacts.resolve())]
        if data:
            mounts.append(hard.readonly_bind(DATA, data))
        if sock is not None:
            mounts.append(Mount(SOCK, sock.name, type="volume"))
        env = {
            "SELFPROG_STAGE": stage, "SELFPROG_OUT": OUT, "SELFPROG_DATA": DATA,
            "SELFPROG_SEED": str(request.seed), "SELFPROG_PROGRAM": program.name,
            "SELFPROG_TIME_BUDGET_S": f"{res.budget_s(bool(gpu_ids)):g}",
            "SELFPROG_GRACE_S": f"{self.grace_s:g}", "PYTHONHASHSEED": str(request.seed),
            "SELFPROG_STAGE_TIMEOUT_S": f"{res.timeout_s:g}",
        }
        if stage == "train":
            env["SELFPROG_LINGER_S"] = f"{self.linger_s:g}"
        env.update(peers.env(program, stage))
        if sock is not None:
            env["SELFPROG_SOCKET"] = f"{SOCK}/model.sock"
            env["SELFPROG_SERVE_REQUEST_S"] = f"{res.timeout_s:g}"
        cpus = min(res.cpus, request.cpus) if request.cpus else res.cpus
        entry = program.manifest.program
        return StageSpec(
            stage=stage, image=image, variant_id=request.variant.id,
            script=peers.script(program, stage) or (entry.entrypoint if stage == "train"
                                                   else entry.evaluator),
            name=hard.container_name(request.run_id, request.variant.id, request.seed, stage,
                                     attempt),
            labels=hard.labels(request.run_id, request.variant.id, stage, self.node),
            create=hard.create_kwargs(res, self.hardening, cpus=cpus, env=env, mounts=mounts,
                                      gpu_ids=gpu_ids),
            timeout_s=res.timeout_s, grace_s=self.grace_s,
            cpu_limit_s=cpu_cap(res.budget_s(False), cpus) if stage == "train" and not gpu_ids
            else None,
            copy_out=artifacts if stage == "train" else None, copy_cap=res.disk_bytes)


class _Started:
    """``start()`` in a thread; ``check`` re-raises what it raised (an engine error)."""

    def __init__(self, start: Callable[[], None]):
        self.error: BaseException | None = None

        def body() -> None:
            try:
                start()
            except BaseException as exc:  # handed to the caller's thread by ``check``
                self.error = exc

        self.thread = threading.Thread(target=body, daemon=True)
        self.thread.start()

    def join(self) -> None:
        self.thread.join()

    def check(self) -> None:
        if self.error is not None:
            raise self.error


class _Background:
    """Cleanup that overlaps the next stage: each ``run`` is one thread running its tasks in order;
    ``join`` waits for all and raises the first ``InfraError`` they met."""

    def __init__(self) -> None:
        self.threads: list[threading.Thread] = []
        self.errors: list[InfraError] = []

    def run(self, *tasks: Callable[[], None]) -> None:
        def body() -> None:
            try:
                for task in tasks:
                    task()
            except InfraError as exc:
                self.errors.append(exc)

        thread = threading.Thread(target=body, daemon=True)
        thread.start()
        self.threads.append(thread)

    def join(self) -> None:
        for thread in self.threads:
            thread.join()
        if self.errors:
            raise self.errors[0]


def judge(program: Program, evaluation: StageOutcome,
          ) -> tuple[Status, str | None, dict[str, float]]:
    """The variant's status and metrics from the EVAL stage alone."""
    stage, metric = evaluation.result, program.manifest.metric.name
    if stage.status is Status.CRASH:
        said = f": {evaluation.stream.error}" if evaluation.stream.error else ""
        return (Status.INVALID, f"eval: the evaluator rejected the artifacts ({stage.error}){said}",
                {})
    if stage.status is not Status.OK:
        return stage.status, f"eval: {stage.error}", {}
    result = evaluation.stream.result
    if result is None:
        return Status.INVALID, "eval: the evaluator sent no result", {}
    if metric not in result.metrics:
        return Status.INVALID, f"eval: the result has no {metric!r}", {}
    return Status.OK, None, dict(result.metrics)


def _with_problems(outcome: StageOutcome) -> StageResult:
    outcome.result.violations.extend(outcome.problems)
    return outcome.result


def _keep_log(api: object, container: str, path: Path) -> None:
    """The tail of the model server's output (its notes, a crash's traceback) into ``path``."""
    try:
        raw = api.logs(container, stdout=True, stderr=True)  # type: ignore[attr-defined]
    except docker.errors.DockerException as exc:
        raw = f"(the model server's output could not be read: {exc})\n".encode()
    path.write_bytes(raw[-SERVE_LOG_BYTES:])


def _remove_volume(volume: Volume, variant_id: str) -> None:
    try:
        volume.remove(force=True)
    except docker.errors.NotFound:
        return
    except docker.errors.DockerException as exc:
        raise InfraError(f"cannot remove volume {volume.name}: {exc}",
                         variant_id=variant_id) from None


def run_seed(program: Program, seed: int, folder: Path) -> VariantResult:
    """The program's seed as shipped, in ``folder`` (a fresh engine client; for the import check
    of a peer problem, which runs it in each isolation)."""
    from orchestrator.containers.engine import connect
    from orchestrator.runner import Variant

    client = connect()
    try:
        variant = Variant(program, program.source_files())
        mode = program.manifest.program.isolation
        request = RunRequest(variant=variant, folder=folder, seed=seed,
                             run_id=f"seed-{mode}-{variant.id}-{os.getpid()}")
        return DockerRunner(client).run(request)
    finally:
        client.close()


def run_program(path: str | Path, folder: Path | None = None, seed: int = 0,
                run_id: str | None = None) -> VariantResult:
    """Run a program directory as shipped through both stages (``selfprog run``).

    Sweeps what dead orchestrators left first. The folder defaults to
    ``runs/single/<program>-<variant id>-s<seed>``.

    Raises:
        ConfigError: the manifest is invalid, or GPUs are asked for on a host without them.
        EngineError: no engine answers, or the runtime image cannot be built.
    """
    from orchestrator.containers.engine import connect
    from orchestrator.containers.sweep import sweep
    from orchestrator.runner import Variant

    program = Program.load(path)
    variant = Variant(program, program.source_files())
    client = connect()
    try:
        sweep(client)
        folder = folder or Path("runs") / "single" / f"{program.name}-{variant.id}-s{seed}"
        request = RunRequest(variant=variant, run_id=run_id or f"single-{variant.id}-{os.getpid()}",
                             folder=folder.resolve(), seed=seed)
        return DockerRunner(client).run(request)
    finally:
        client.close()

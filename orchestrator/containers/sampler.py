"""Sampling from a variant's exported codelm inside a hardened container.

A variant's ``model.pt`` is TorchScript written by untrusted TRAIN-stage code: loading it can run
``__setstate__`` and its ``forward`` can call ops such as ``aten::from_file`` that read and write
files, loop forever or eat memory. The host therefore only checks the folder's shape (``model.json``
parsed, file sizes, no links) and never loads the model. Sampling runs ``python -m sandbox.codelm``
in the runtime image with the settings of :mod:`.hardening` (no network, read-only
root, every capability dropped, user 10001, limits on memory, processes and CPU), the model folder
bind-mounted read-only and nothing else, a wall-clock deadline the host enforces by killing the
container, output read up to a cap, and the container removed whatever happened: the lifecycle
of ``container.hardened``, the same as a stage's.

    lm = SandboxedCompleter(Path("runs/.../artifacts"), timeout_s=120)
    texts = lm.complete_many([CompletionRequest("def f():\\n", 200, seed=1),
                              CompletionRequest("x = ", 50)])
"""

from __future__ import annotations

import json
import os
import stat
import uuid
from dataclasses import asdict
from pathlib import Path
from typing import Any

import docker

from orchestrator.completer import CompletionRequest, ScoreRequest
from orchestrator.containers import hardening as hard
from orchestrator.containers.container import ContainerSpec, hardened
from orchestrator.containers.engine import connect
from orchestrator.containers.images import Flavour, ensure_runtime
from orchestrator.errors import CodeLMError, EngineError
from orchestrator.program import ResourcesSection
from sandbox import hfexport
from sandbox.codelm import META_FILE, MODEL_FILE, SampleError, parse_meta
from sandbox.hfsample import BYTES_PER_TOKEN

MOUNT = "/model"
ENTRYPOINT = ["/opt/venv/bin/python", "-m", "sandbox.codelm"]
HF_ENTRYPOINT = ["/opt/venv/bin/python", "-m", "sandbox.hfsample"]

MAX_META_BYTES = 64 * 1024
MAX_MODEL_BYTES = 1024**3
MAX_REQUEST_BYTES = 96 * 1024
"""The request travels in an environment variable (one string must stay under 128 KiB)."""
GRACE_S = 1.0
"""Seconds between SIGTERM and SIGKILL at the deadline: sampling has nothing to save."""
_STDERR_TAIL = 1500


def check_folder(folder: Path) -> int:
    """The model's context, read from ``model.json`` without loading ``model.pt``.

    Raises:
        CodeLMError: a file is missing, a link, too large, unreadable for the container's user,
            or ``model.json`` has no positive integer ``context``.
    """
    if not folder.is_dir():
        raise CodeLMError(f"{folder} holds no exported codelm ({MODEL_FILE} + {META_FILE})")
    for name, cap in ((META_FILE, MAX_META_BYTES), (MODEL_FILE, MAX_MODEL_BYTES)):
        info = os.lstat(folder / name) if (folder / name).exists() else None
        if info is None or not stat.S_ISREG(info.st_mode):
            raise CodeLMError(f"{folder} holds no exported codelm ({MODEL_FILE} + {META_FILE}): "
                              f"{name} is missing or not a plain file")
        if info.st_size > cap:
            raise CodeLMError(f"{folder / name}: {info.st_size} bytes, more than {cap}")
        if not info.st_mode & stat.S_IROTH:
            raise CodeLMError(f"{folder / name}: not readable by the sandbox user (chmod o+r)")
    if os.stat(folder).st_mode & 0o005 != 0o005:
        raise CodeLMError(f"{folder}: not readable by the sandbox user (chmod o+rx)")
    try:
        return parse_meta((folder / META_FILE).read_text(), str(folder / META_FILE))
    except (SampleError, UnicodeDecodeError) as exc:
        raise CodeLMError(str(exc)) from None


def check_hf_folder(folder: Path) -> int:
    """The context, in bytes, of a data-only HF export (``programs/coder``), checked on the host
    without loading anything (:func:`sandbox.hfexport.check`: no pickle, no ``.py``, no
    ``auto_map``, safetensors and tokenizer.json present).

    Raises:
        CodeLMError: the folder is refused; the message names the file and why.
    """
    try:
        config = hfexport.check(folder)
    except (hfexport.ExportError, OSError) as exc:
        raise CodeLMError(f"refused as a generator: {exc}") from None
    if os.stat(folder).st_mode & 0o005 != 0o005:
        raise CodeLMError(f"{folder}: not readable by the sandbox user (chmod o+rx)")
    positions = next((v for k in ("max_position_embeddings", "n_positions", "n_ctx")
                      if isinstance(v := config.get(k), int) and v > 0), 2048)
    return min(positions, 32768) * BYTES_PER_TOKEN


class SandboxedCompleter:
    """The default :class:`orchestrator.completer.Completer`: it never runs the model on the host;
    each batch of requests is one hardened container. It serves both kinds of export: a codelm
    (``model.pt`` + ``model.json``, sampled by ``sandbox.codelm``) and a data-only HF causal LM
    (``config.json`` + safetensors + ``tokenizer.json``, sampled by ``sandbox.hfsample``)."""

    def __init__(self, folder: str | Path, *, timeout_s: float = 300.0, memory: str = "2g",
                 cpus: float = 1.0, client: docker.DockerClient | None = None,
                 image: str | None = None, gpu_ids: tuple[int, ...] = ()):
        """
        Args:
            folder: the exported model (``model.pt`` + ``model.json``); checked, not loaded.
            timeout_s: wall-clock deadline of one container (start to exit); then it is killed.
            memory: the container's memory limit (swap off).
            cpus: CPU cores the container may use.
            client: an engine client; connected on first use when not given (an engine must
                answer: none is installed or started here).
            image: the runtime image's tag; ``ensure_runtime(client, FLAVOUR)`` when not given
                (the GPU flavour when ``gpu_ids`` are given).
            gpu_ids: host GPUs the container gets (its device request names these and no other;
                inside they are CUDA devices 0..n-1; an HF export samples on them); empty: CPU only.

        Raises:
            CodeLMError: the folder does not hold a usable export (see :func:`check_folder`
                and :func:`check_hf_folder`).
        """
        self.folder = Path(folder).resolve()
        self.hf = not (self.folder / MODEL_FILE).exists() and hfexport.is_export(self.folder)
        self.context = check_hf_folder(self.folder) if self.hf else check_folder(self.folder)
        self.gpu_ids = tuple(gpu_ids)
        self.timeout_s = timeout_s
        self.resources = ResourcesSection(memory=memory, pids=64, disk="16m", cpus=cpus)
        if self.hf:  # float32 weights in memory, plus transformers and torch themselves
            weights = sum(p.stat().st_size for p in self.folder.glob("*.safetensors"))
            need = (2 * weights + 1536 * 1024**2) // 1024**2
            if need > self.resources.memory_bytes // 1024**2:
                self.resources = ResourcesSection(memory=f"{need}m", pids=64, disk="16m",
                                                  cpus=cpus)
        self.cpus = cpus
        self.gpu_ids = tuple(gpu_ids)
        self._client = client
        self._image = image

    def complete(self, prompt: str, max_new_bytes: int, temperature: float = 0.8, seed: int = 0,
                 stop: str | None = None) -> str:
        """One completion (without its prompt).

        Raises:
            CodeLMError: the container failed, timed out, or the model failed on this prompt.
        """
        (out,) = self.complete_many(
            [CompletionRequest(prompt, max_new_bytes, temperature, seed, stop)])
        if isinstance(out, CodeLMError):
            raise out
        return out

    def complete_many(self, requests: list[CompletionRequest]) -> list[str | CodeLMError]:
        """Sample every request in one container; a request the model failed on gives its error.

        Raises:
            CodeLMError: the batch as a whole failed (engine, deadline, crash, bad output).
        """
        if not requests:
            return []
        request = json.dumps({"prompts": [asdict(r) for r in requests]})
        if len(request.encode()) > MAX_REQUEST_BYTES and len(requests) > 1:
            half = len(requests) // 2
            return self.complete_many(requests[:half]) + self.complete_many(requests[half:])
        if len(request.encode()) > MAX_REQUEST_BYTES:
            raise CodeLMError(f"a prompt of {len(request.encode())} bytes is over the "
                              f"{MAX_REQUEST_BYTES}-byte request cap")
        cap = 64 * 1024 + sum(16 * r.max_new_bytes for r in requests)
        completions = self._answer(request, cap, "completions", len(requests))
        return [self._completion(c) for c in completions]

    def score_many(self, requests: list[ScoreRequest]) -> list[list[float] | CodeLMError]:
        """Score every request in one container; a request the model failed on gives its error.

        Raises:
            CodeLMError: the batch as a whole failed (engine, deadline, crash, bad output).
        """
        if not requests:
            return []
        request = json.dumps({"scores": [
            {"prompt": r.prompt, "continuations": list(r.continuations)} for r in requests]})
        if len(request.encode()) > MAX_REQUEST_BYTES and len(requests) > 1:
            half = len(requests) // 2
            return self.score_many(requests[:half]) + self.score_many(requests[half:])
        if len(request.encode()) > MAX_REQUEST_BYTES:
            raise CodeLMError(f"a score request of {len(request.encode())} bytes is over the "
                              f"{MAX_REQUEST_BYTES}-byte request cap")
        cap = 64 * 1024 + sum(32 * len(r.continuations) for r in requests)
        entries = self._answer(request, cap, "scores", len(requests))
        return [self._scores(e, len(r.continuations)) for e, r in zip(entries, requests,
                                                                        strict=True)]

    def _answer(self, request: str, cap: int, key: str, n: int) -> list[Any]:
        stdout = self._run(request, cap)
        try:
            entries = json.loads(stdout)[key]
        except (json.JSONDecodeError, KeyError, TypeError):
            entries = None
        if not isinstance(entries, list) or len(entries) != n:
            raise CodeLMError(f"{self.folder}: the sampling container answered no valid JSON: "
                              f"{stdout[:200]!r}")
        return entries

    def _scores(self, entry: Any, n: int) -> list[float] | CodeLMError:
        values = entry.get("logprobs") if isinstance(entry, dict) else None
        if (isinstance(values, list) and len(values) == n
                and all(isinstance(v, int | float) and not isinstance(v, bool) for v in values)
                and all(v <= 1e-6 and v == v for v in values)):
            return [float(v) for v in values]
        if isinstance(entry, dict) and isinstance(entry.get("error"), str):
            return CodeLMError(f"{self.folder}: {entry['error'][:_STDERR_TAIL]}")
        return CodeLMError(f"{self.folder}: malformed scores {str(entry)[:200]!r}")

    def _completion(self, entry: Any) -> str | CodeLMError:
        if isinstance(entry, dict) and isinstance(entry.get("text"), str):
            return entry["text"]
        if isinstance(entry, dict) and isinstance(entry.get("error"), str):
            return CodeLMError(f"{self.folder}: {entry['error'][:_STDERR_TAIL]}")
        return CodeLMError(f"{self.folder}: a malformed completion {str(entry)[:200]!r}")

    def _run(self, request: str, cap: int) -> str:
        """The container's stdout; every failure, the engine's included, is a ``CodeLMError``."""
        try:
            client = self._client = self._client or connect(timeout=60)
            flavour: Flavour = "gpu" if self.gpu_ids else "cpu"
            image = self._image = self._image or ensure_runtime(client, flavour)
            with hardened(client.api, self._spec(image, request)) as box:
                out = bytearray()

                def gather(chunk: bytes) -> bool:
                    out.extend(chunk)
                    return len(out) > cap  # stop reading: the answer is lost anyway

                box.start()
                if box.read(gather):
                    raise CodeLMError(f"{self.folder}: the sampling container wrote more than "
                                      f"{cap} bytes")
                state = box.exit_state()
                if box.watchdog.fired:
                    raise CodeLMError(f"{self.folder}: sampling ran past its {self.timeout_s:g} s "
                                      "deadline and was killed")
                if state.get("ExitCode") != 0:
                    why = ("hit its memory limit" if state.get("OOMKilled")
                           else f"exited {state.get('ExitCode')}")
                    raise CodeLMError(f"{self.folder}: the sampling container {why}: "
                                      f"{box.stderr_tail(20)[-_STDERR_TAIL:]}")
        except EngineError as exc:  # InfraError, ImageError, no engine: the batch failed
            raise CodeLMError(f"{self.folder}: {exc}") from None
        return out.decode(errors="replace")

    def _spec(self, image: str, request: str) -> ContainerSpec:
        env = {"SELFPROG_CODELM_REQUEST": request, "SELFPROG_CODELM_MODEL": MOUNT,
               "OMP_NUM_THREADS": str(max(1, int(self.cpus)))}
        mounts = [hard.readonly_bind(MOUNT, self.folder)]
        small = hard.Hardening(tmp_bytes=64 * 1024**2, shm_bytes=64 * 1024**2)
        if self.hf:  # transformers looks for a temporary folder and these caches at import
            env.update({"HF_HUB_OFFLINE": "1", "HF_HOME": "/tmp/hf",
                        "TORCHINDUCTOR_CACHE_DIR": "/tmp/inductor"})
        return ContainerSpec(
            what="the sampling container", image=image,
            name=f"selfprog-codelm-{os.getpid()}-{uuid.uuid4().hex[:10]}",
            labels=hard.labels("", "codelm", "sample"),
            create=hard.create_kwargs(self.resources, small, cpus=self.cpus, env=env,
                                      mounts=mounts, gpu_ids=self.gpu_ids),
            entrypoint=HF_ENTRYPOINT if self.hf else ENTRYPOINT, command=[],
            timeout_s=self.timeout_s, grace_s=GRACE_S)

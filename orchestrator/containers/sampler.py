"""Sampling from a variant's exported codelm inside a hardened container.

A variant's ``model.pt`` is TorchScript written by untrusted TRAIN-stage code: loading it can run
``__setstate__`` and its ``forward`` can call ops such as ``aten::from_file`` that read and write
files, loop forever or eat memory. The host therefore only checks the folder's shape (``model.json``
parsed, file sizes, no links) and never loads the model. Sampling runs ``python -m sandbox.codelm``
in the runtime image with the settings of :mod:`.hardening` (no network, read-only
root, every capability dropped, user 10001, limits on memory, processes and CPU), the model folder
bind-mounted read-only and nothing else, a wall-clock deadline the host enforces by killing the
container, output read up to a cap, and the container removed whatever happened.

    lm = ContainerCompleter(Path("runs/.../artifacts"), timeout_s=120)
    texts = lm.complete_many([Prompt("def f():\\n", 200, seed=1), Prompt("x = ", 50)])
"""

from __future__ import annotations

import json
import os
import stat
import uuid
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import docker
import requests
from docker.errors import DockerException, NotFound
from docker.types import Mount

from orchestrator.containers import hardening as hard
from orchestrator.containers.images import ensure_runtime
from orchestrator.generators.inprocess import META_FILE, MODEL_FILE, CodeLMError
from orchestrator.program import ResourcesSection
from sandbox.codelm import SampleError, parse_meta

MOUNT = "/model"
ENTRYPOINT = ["/opt/venv/bin/python", "-m", "sandbox.codelm"]
MAX_META_BYTES = 64 * 1024
MAX_MODEL_BYTES = 1024**3
MAX_REQUEST_BYTES = 96 * 1024
"""The request travels in an environment variable (one string must stay under 128 KiB)."""
_STDERR_TAIL = 1500


@dataclass(frozen=True)
class Prompt:
    """One completion to sample: the arguments of ``complete``."""

    prompt: str
    max_new_bytes: int
    temperature: float = 0.8
    seed: int = 0
    stop: str | None = None


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


class ContainerCompleter:
    """A completer (``orchestrator.generators.selfgen.Completer``) that never runs the model on
    the host: each call, or each batch, is one hardened container."""

    def __init__(self, folder: str | Path, *, timeout_s: float = 300.0, memory: str = "2g",
                 cpus: float = 1.0, client: docker.DockerClient | None = None,
                 image: str | None = None):
        """
        Args:
            folder: the exported model (``model.pt`` + ``model.json``); checked, not loaded.
            timeout_s: wall-clock deadline of one container (start to exit); then it is killed.
            memory: the container's memory limit (swap off).
            cpus: CPU cores the container may use.
            client: an engine client; connected on first use when not given.
            image: the runtime image's tag; ``ensure_runtime(client, "cpu")`` when not given.

        Raises:
            CodeLMError: the folder does not hold a usable export (see :func:`check_folder`).
        """
        self.folder = Path(folder).resolve()
        self.context = check_folder(self.folder)
        self.timeout_s = timeout_s
        self.resources = ResourcesSection(memory=memory, pids=64, disk="16m", cpus=cpus)
        self.cpus = cpus
        self._client = client
        self._image = image

    def complete(self, prompt: str, max_new_bytes: int, temperature: float = 0.8, seed: int = 0,
                 stop: str | None = None) -> str:
        """One completion, as ``ExportedCodeLM.complete``.

        Raises:
            CodeLMError: the container failed, timed out, or the model failed on this prompt.
        """
        (out,) = self.complete_many([Prompt(prompt, max_new_bytes, temperature, seed, stop)])
        if isinstance(out, CodeLMError):
            raise out
        return out

    def complete_many(self, prompts: list[Prompt]) -> list[str | CodeLMError]:
        """Sample every prompt in one container; a prompt the model failed on gives its error.

        Raises:
            CodeLMError: the batch as a whole failed (engine, deadline, crash, bad output).
        """
        request = json.dumps({"prompts": [asdict(p) for p in prompts]})
        if len(request.encode()) > MAX_REQUEST_BYTES and len(prompts) > 1:
            half = len(prompts) // 2
            return self.complete_many(prompts[:half]) + self.complete_many(prompts[half:])
        if len(request.encode()) > MAX_REQUEST_BYTES:
            raise CodeLMError(f"a prompt of {len(request.encode())} bytes is over the "
                              f"{MAX_REQUEST_BYTES}-byte request cap")
        cap = 64 * 1024 + sum(16 * p.max_new_bytes for p in prompts)
        stdout = self._run(request, cap)
        try:
            answer = json.loads(stdout)
            completions = answer["completions"]
            assert isinstance(completions, list) and len(completions) == len(prompts)
        except (json.JSONDecodeError, KeyError, TypeError, AssertionError):
            raise CodeLMError(f"{self.folder}: the sampling container answered no valid JSON: "
                              f"{stdout[:200]!r}") from None
        return [self._completion(c) for c in completions]

    def _completion(self, entry: Any) -> str | CodeLMError:
        if isinstance(entry, dict) and isinstance(entry.get("text"), str):
            return entry["text"]
        if isinstance(entry, dict) and isinstance(entry.get("error"), str):
            return CodeLMError(f"{self.folder}: {entry['error'][:_STDERR_TAIL]}")
        return CodeLMError(f"{self.folder}: a malformed completion {str(entry)[:200]!r}")

    def _run(self, request: str, cap: int) -> str:
        container = None
        try:
            client = self._client = self._client or docker.from_env(timeout=60)
            if self._image is None:
                self._image = ensure_runtime(client, "cpu")
            container = self._create(client.api, request)
            client.api.start(container)
            try:
                state = client.api.wait(container, timeout=self.timeout_s)
            except requests.exceptions.RequestException:
                client.api.kill(container)
                raise CodeLMError(f"{self.folder}: sampling ran past its {self.timeout_s:g} s "
                                  "deadline and was killed") from None
            stdout = _read(client.api.logs(container, stdout=True, stderr=False, stream=True),
                           cap)
            if state.get("StatusCode") != 0:
                oom = client.api.inspect_container(container)["State"].get("OOMKilled")
                why = "hit its memory limit" if oom else f"exited {state.get('StatusCode')}"
                err = client.api.logs(container, stdout=False, stderr=True, tail=20)
                raise CodeLMError(f"{self.folder}: the sampling container {why}: "
                                  f"{err.decode(errors='replace')[-_STDERR_TAIL:]}")
            return stdout
        except (DockerException, requests.exceptions.RequestException) as exc:
            raise CodeLMError(f"{self.folder}: the engine failed while sampling: {exc}") from None
        finally:
            if container is not None:
                _remove(self._client, container)

    def _create(self, api: Any, request: str) -> str:
        env = {"SELFPROG_CODELM_REQUEST": request, "SELFPROG_CODELM_MODEL": MOUNT,
               "OMP_NUM_THREADS": str(max(1, int(self.cpus)))}
        mounts = [Mount(MOUNT, str(self.folder), type="bind", read_only=True)]
        small = hard.Hardening(tmp_bytes=64 * 1024**2, shm_bytes=64 * 1024**2)
        kwargs = hard.create_kwargs(self.resources, small, cpus=self.cpus, env=env, mounts=mounts)
        host = api.create_host_config(**kwargs.pop("host_config"))
        name = f"selfprog-codelm-{os.getpid()}-{uuid.uuid4().hex[:10]}"
        return api.create_container(self._image, entrypoint=ENTRYPOINT, command=[], name=name,
                                    labels=hard.labels("", "codelm", "sample"), host_config=host,
                                    **kwargs)["Id"]


def _read(chunks: Any, cap: int) -> str:
    out = bytearray()
    try:
        for chunk in chunks:
            out += chunk
            if len(out) > cap:
                raise CodeLMError(f"the sampling container wrote more than {cap} bytes")
    finally:
        chunks.close()
    return out.decode(errors="replace")


def _remove(client: docker.DockerClient | None, container: str) -> None:
    if client is None:
        return
    try:
        client.api.remove_container(container, force=True)
    except NotFound:
        return
    except DockerException as exc:
        raise CodeLMError(f"cannot remove the sampling container {container[:12]}: {exc}") \
            from None

"""Small fakes of the Runner and Generator protocols, so the loop is tested without Docker or a
language model. The fake program's metric is ``(X - 3)²`` plus seeded noise, where ``X`` is a
constant in ``train.py`` the fake generator moves."""

from __future__ import annotations

import random
import re
import threading
import time
from pathlib import Path

from orchestrator.generators.base import GenerationCall, GenerationRequest, Proposal
from orchestrator.program import Program
from orchestrator.result import StageResult, Status, VariantResult
from orchestrator.runner import RunRequest

MANIFEST = """
[program]
name = "fake"
editable = ["train.py"]
[metric]
name = "loss"
goal = "{goal}"
{noise}
[resources]
cpus = 1
timeout_s = 10
"""


def make_program(root: Path, *, x: float = 0.0, goal: str = "minimize",
                 noise: float | None = 0.01) -> Program:
    root.mkdir(parents=True, exist_ok=True)
    (root / "program.toml").write_text(
        MANIFEST.format(goal=goal, noise=f"noise = {noise}" if noise is not None else ""))
    (root / "train.py").write_text(f"X = {x}\n")
    (root / "evaluate.py").write_text("# trusted\n")
    return Program.load(root)


def x_of(files: dict[str, str]) -> float:
    return float(re.search(r"X = (\S+)", files["train.py"]).group(1))


class FakeRunner:
    """Scores ``(X - 3)²`` (+ noise by seed); ``X`` in ``crash_on`` crashes, in ``infra_on``
    fails as the engine would, ``infra_times`` times."""

    def __init__(self, *, delay: float = 0.0, noise: float = 0.0,
                 crash_on: set[float] = frozenset(), infra_on: set[float] = frozenset(),
                 infra_times: int = 1):
        self.delay, self.noise = delay, noise
        self.crash_on, self.infra_on, self.infra_left = crash_on, infra_on, {}
        self.infra_times = infra_times
        self.calls: list[tuple[str, int, tuple[int, ...], float | None]] = []
        self.lock = threading.Lock()

    def run(self, request: RunRequest) -> VariantResult:
        x = x_of(request.variant.files)
        with self.lock:
            self.calls.append((request.variant.id, request.seed, request.gpu_ids, request.cpus))
            left = self.infra_left.setdefault(x, self.infra_times)
            infra = x in self.infra_on and left > 0
            if infra:
                self.infra_left[x] = left - 1
        time.sleep(self.delay)
        request.folder.mkdir(parents=True, exist_ok=True)
        (request.folder / "train.log").write_text(f"x={x}\n")
        vid = request.variant.id
        if infra:
            return VariantResult(variant_id=vid, status=Status.INFRA_ERROR, error="engine hiccup")
        if x in self.crash_on:
            stage = StageResult(stage="train", status=Status.CRASH, exit_code=1, error="boom")
            return VariantResult(variant_id=vid, status=Status.CRASH, stages=[stage], error="boom")
        loss = (x - 3) ** 2 + random.Random(request.seed).gauss(0, self.noise)
        stages = [StageResult(stage="train", status=Status.OK, duration_s=self.delay),
                  StageResult(stage="eval", status=Status.OK)]
        return VariantResult(variant_id=vid, status=Status.OK, metrics={"loss": loss},
                             stages=stages, seed=request.seed)


class FakeGenerator:
    """Moves ``X`` by a random step from a fixed menu; ``script`` replaces the draws."""

    name = "fake"

    def __init__(self, *, step: float = 0.5, script: list[float] | None = None, seed: int = 0):
        self.step = step
        self.script = list(script) if script is not None else None
        self.rng = random.Random(seed)
        self.requests: list[GenerationRequest] = []

    def propose(self, request: GenerationRequest) -> list[Proposal]:
        self.requests.append(request)
        parent = request.parents[0]
        if self.script is not None:
            x = self.script.pop(0) if self.script else x_of(parent.files)
        else:
            x = x_of(parent.files) + self.rng.choice([-2, -1, 1, 2]) * self.step
        call = GenerationCall(backend="fake", model="menu", prompt=f"improve {parent.variant_id}",
                              response=f"X = {x}")
        return [Proposal(parent.variant_id, {"train.py": f"X = {x}\n"}, call)]

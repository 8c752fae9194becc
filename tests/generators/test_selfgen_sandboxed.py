"""``self`` samples a variant's model in a hardened container: never on the host.

A variant's ``model.pt`` is TorchScript the variant wrote; its ``forward`` may call ops that write
host files or loop forever. These tests run the real engine.
"""

from __future__ import annotations

import json
import os
import subprocess
import time
from pathlib import Path

import pytest
import torch

from orchestrator.completer import CompletionRequest, ScoreRequest
from orchestrator.containers.sampler import SandboxedCompleter
from orchestrator.errors import CodeLMError
from orchestrator.generators.auto import make_generator
from orchestrator.generators.base import GenerationRequest, Parent, Reason
from orchestrator.generators.config import CodeLMConfig, GeneratorConfig
from orchestrator.generators.inprocess import InProcessCompleter
from orchestrator.generators.selfgen import SelfGenerator
from orchestrator.generators.testing import export_tiny
from orchestrator.program import Program
from sandbox.codelm import SampleError, parse_meta

ROOT = Path(__file__).resolve().parents[2]


class FileAttack(torch.nn.Module):
    """Maps a host file shared (writes go back to it) and creates another one."""

    def __init__(self, victim: str):
        super().__init__()
        self.victim = victim

    def forward(self, idx: torch.Tensor) -> torch.Tensor:
        hit = torch.from_file(self.victim, True, 16, dtype=torch.uint8).fill_(65)
        planted = torch.from_file(self.victim + ".planted", True, 8, dtype=torch.uint8).fill_(66)
        # used in the output, so TorchScript's dead-code pass keeps the writes
        return torch.zeros(1, idx.shape[1], 256) + (hit.sum() + planted.sum()).float() * 0


class Forever(torch.nn.Module):
    """Never returns."""

    def forward(self, idx: torch.Tensor) -> torch.Tensor:
        n = 0
        while n >= 0:
            n = (n + 1) % 1000
        return torch.zeros(1, idx.shape[1], 256)


def export(module: torch.nn.Module, folder: Path) -> Path:
    """Save ``module`` in codelm's export format, readable by the sandbox user."""
    folder.mkdir(parents=True)
    torch.jit.script(module).save(str(folder / "model.pt"))
    (folder / "model.json").write_text(json.dumps({"format": "codelm-bytes-v1", "context": 16}))
    return opened(folder)


def opened(folder: Path) -> Path:
    """pytest's tmp folders are 0700; the container's user (10001) must read the mount."""
    folder.chmod(0o755)
    for path in folder.iterdir():
        path.chmod(0o644)
    return folder


@pytest.fixture(scope="module")
def tiny(tmp_path_factory) -> Path:
    return opened(export_tiny(tmp_path_factory.mktemp("tiny"), seed=3, context=16))


@pytest.mark.docker
@pytest.mark.slow
def test_container_samples_the_same_text_as_in_process(docker_client, runtime_image, tiny):
    lm = SandboxedCompleter(tiny, client=docker_client, image=runtime_image, timeout_s=120)
    local = InProcessCompleter.load(tiny, device="cpu")
    prompts = [CompletionRequest("def add(a, b):\n", 40, 1.0, 7),
               CompletionRequest("x = " * 20 + "é", 30, 0.8, 2, "\n"),
               CompletionRequest("def f(a, b):\n    return ", 30, 1.0, 3, None, "python-expr",
                                 ("a", "b", "max(2+"))]
    texts = lm.complete_many(prompts)
    assert texts == local.complete_many(prompts)  # the expression grammar is in the image too
    assert len(texts[0]) >= 14
    assert lm.complete("x = ", 20, 1.0, 8) == local.complete("x = ", 20, 1.0, 8)
    assert not docker_client.api.containers(all=True, filters={"label": "selfprog.stage=sample",
                                                               "name": f"codelm-{os.getpid()}-"})


@pytest.mark.docker
@pytest.mark.slow
def test_container_scores_as_in_process_and_a_bad_request_costs_only_itself(
        docker_client, runtime_image, tiny):
    lm = SandboxedCompleter(tiny, client=docker_client, image=runtime_image, timeout_s=120)
    local = InProcessCompleter.load(tiny, device="cpu")
    requests = [ScoreRequest("N_LAYER = ", ("2  # x\n", "4  # x\n", "é")),
                ScoreRequest("def f():\n" * 9, ("    return 1\n",)),
                ScoreRequest("x", ("",))]
    got = lm.score_many(requests)
    want = local.score_many(requests)
    for a, b in zip(got[:2], want[:2], strict=True):
        assert a == pytest.approx(b, abs=1e-4) and all(v < 0 for v in a)
    assert isinstance(got[2], CodeLMError) and "continuation" in str(got[2])
    assert lm.score_many([]) == []


@pytest.mark.docker
@pytest.mark.slow
def test_hostile_model_touches_no_host_file_and_is_a_rejection(docker_client, runtime_image,
                                                               tmp_path):
    victim = tmp_path / "victim.bin"
    victim.write_bytes(b"x" * 16)
    model = export(FileAttack(str(victim)), tmp_path / "model")
    # The attack is real: run in this process, the model rewrites the file and plants another.
    spare = tmp_path / "spare.bin"
    spare.write_bytes(b"x" * 16)
    torch.jit.script(FileAttack(str(spare)))(torch.zeros(1, 2, dtype=torch.long))
    assert spare.read_bytes() == b"A" * 16 and (tmp_path / "spare.bin.planted").exists()

    program = Program.load(ROOT / "programs" / "codelm")
    for fraction, kind in ((0.0, "completion"), (1.0, "hole")):  # sampling, then scoring
        gen = make_generator(GeneratorConfig(backend="self", codelm=CodeLMConfig(
            model=str(model), max_new_bytes=16, timeout_s=120, hole_fraction=fraction,
            candidates=1)))
        assert isinstance(gen, SelfGenerator) and isinstance(gen.lm, SandboxedCompleter)
        gen.lm._client, gen.lm._image = docker_client, runtime_image
        proposals = gen.propose(GenerationRequest(
            program, (Parent("p", program.source_files()),), n=2, seed=1))
        assert [p.rejection.split(":")[0] for p in proposals] == [Reason.GENERATION_ERROR] * 2
        assert all(p.call is not None and p.call.kind == kind and "from_file" in p.call.error
                   for p in proposals), [p.call.error for p in proposals]
    assert victim.read_bytes() == b"x" * 16
    assert not (tmp_path / "victim.bin.planted").exists()


@pytest.mark.docker
@pytest.mark.slow
def test_model_that_never_returns_is_killed_at_the_deadline(docker_client, runtime_image,
                                                            tmp_path):
    model = export(Forever(), tmp_path / "model")
    lm = SandboxedCompleter(model, client=docker_client, image=runtime_image, timeout_s=4)
    started = time.monotonic()
    with pytest.raises(CodeLMError, match="deadline"):
        lm.complete("x", 4)
    assert time.monotonic() - started < 4 + 10


@pytest.mark.docker
@pytest.mark.slow
def test_a_sampling_container_past_its_deadline_is_killed_and_removed(docker_client,
                                                                      runtime_image, tmp_path):
    model = export(Forever(), tmp_path / "model")
    lm = SandboxedCompleter(model, client=docker_client, image=runtime_image, timeout_s=3)
    with pytest.raises(CodeLMError, match="ran past its 3 s deadline and was killed"):
        lm.complete_many([CompletionRequest("x", 4), CompletionRequest("y", 4)])
    assert not docker_client.api.containers(all=True, filters={
        "label": "selfprog.stage=sample", "name": f"selfprog-codelm-{os.getpid()}-"})


def test_without_an_engine_sampling_fails_saying_how_to_start_one_and_starts_none(
        tmp_path, tiny, monkeypatch):
    started = []
    monkeypatch.setattr(subprocess, "Popen", lambda *a, **k: started.append(a))
    monkeypatch.setenv("DOCKER_HOST", "tcp://127.0.0.1:9")
    lm = SandboxedCompleter(tiny, timeout_s=5)
    with pytest.raises(CodeLMError, match="selfprog engine"):
        lm.complete("x = ", 4)
    assert started == [], "sampling must never install or start an engine"


def test_folder_is_checked_on_the_host_without_loading_the_model(tmp_path, tiny):
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "model.pt").write_bytes(b"not a zip archive: never loaded on the host")
    (bad / "model.json").write_text(json.dumps({"context": "16"}))
    opened(bad)
    with pytest.raises(CodeLMError, match="context"):
        SandboxedCompleter(bad)
    (bad / "model.json").write_text(json.dumps({"context": 16}))
    assert SandboxedCompleter(bad).context == 16  # the archive is the container's to judge
    (bad / "model.pt").unlink()
    (bad / "model.pt").symlink_to(tiny / "model.pt")
    with pytest.raises(CodeLMError, match="not a plain file"):
        SandboxedCompleter(bad)
    with pytest.raises(SampleError, match="context"):
        parse_meta("[]", "x")


SELF_TRAIN = """import json
import os
from pathlib import Path

import torch

from sandbox import report

X = 0.0  # search: float[-3, 3]
Y = 0.0  # search: float[-3, 3]


class Bigram(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.table = torch.nn.Parameter(torch.randn(256, 256, generator=torch.Generator()
                                                     .manual_seed(int(X * 100 + Y * 7))))

    def forward(self, idx: torch.Tensor) -> torch.Tensor:
        return self.table[idx]


out = Path(os.environ.get("SELFPROG_OUT", "out"))
(out / "params.json").write_text(json.dumps({"x": X, "y": Y}))
torch.jit.script(Bigram()).save(str(out / "model.pt"))
(out / "model.json").write_text(json.dumps({"context": 64}))
for name in ("params.json", "model.pt", "model.json"):
    report.artifact(name)
"""


@pytest.mark.docker
@pytest.mark.slow
def test_evolve_with_the_self_generator_crowns_a_child_the_self_wrote(
        tmp_path, docker_client, runtime_image, tiny):
    """The real loop: each variant exports a model in TRAIN, the run starts from a given model,
    children are written by the model (sampled in a container), and once a child is crowned its
    own export writes the next children; the report names the writers."""
    from typer.testing import CliRunner

    from orchestrator.cli.app import app
    from orchestrator.runs.store import Store
    from tests.evolution.quickprog import remove_quick_images, write_quick_program

    program = write_quick_program(tmp_path / "quick", nonce=f"self {time.time()}")
    (program.root / "train.py").write_text(SELF_TRAIN)
    toml = (program.root / "program.toml").read_text()
    (program.root / "program.toml").write_text(toml.replace('memory = "256m"',
                                                            'memory = "1g"'))
    runs = tmp_path / "runs"
    try:
        done = CliRunner().invoke(app, [
            "evolve", "--program", str(program.root), "--variants", "6", "--generator", "self",
            "--run-id", "selfci", "--set", f'runs_dir="{runs}"',
            "--set", f'generator.codelm.model="{tiny}"',
            "--set", "generator.codelm.hole_fraction=1.0"])
        assert done.exit_code == 0, done.output
        store = Store(runs / "selfci")
        calls = store.calls()
        assert calls and all(c["backend"] == "self" and c["kind"] == "hole" for c in calls)
        written = {c["variant_id"]: c["generator"] for c in calls if c["variant_id"]}
        admitted = [v for v in store.variants() if v.verdict == "admitted"]
        assert any(v.id in written for v in admitted), "no child written by the self crowned"
        assert {w for w in written.values() if w} <= {v.id for v in admitted}
        assert any(written.values()), "no child was written by a crowned variant's model"
        page = (runs / "selfci" / "report.html").read_text()
        assert 'id="written-by"' in page and "the given model" in page
        assert not docker_client.containers.list(all=True,
                                                 filters={"label": "selfprog.run=selfci"})
    finally:
        remove_quick_images(docker_client)

"""A task evolved from its spec alone, for real: the digits task's reference is never shown nor
run; a scripted model writes first drafts through the real prompt and parser, each draft runs
through Docker TRAIN and EVAL, the one that runs ``ok`` becomes the population."""

from __future__ import annotations

from pathlib import Path

import pytest

from orchestrator.containers.docker_runner import DockerRunner
from orchestrator.evolution.config import load_config
from orchestrator.evolution.launch import check_from_spec
from orchestrator.evolution.loop import Evolution
from orchestrator.evolution.slots import Slot
from orchestrator.generators.base import GenerationCall
from orchestrator.generators.config import GeneratorConfig
from orchestrator.generators.lm import LMGenerator
from orchestrator.program import Program
from orchestrator.runs.report import write_report
from orchestrator.runs.store import Store

ROOT = Path(__file__).resolve().parents[2]

BROKEN = '''Here is a first version.

```python train.py
import os
raise SystemExit("forgot to write the model")
```
'''

DRAFT = '''A small MLP that trains within the budget:

```python train.py
import os
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn

from sandbox import report

data = np.load(Path(os.environ["SELFPROG_DATA"]) / "digits.npz")
x = torch.from_numpy(data["x"]).float() / 16.0
y = torch.from_numpy(data["y"]).long()
torch.manual_seed(int(os.environ.get("SELFPROG_SEED", "0")))


class Net(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.body = nn.Sequential(nn.Linear(64, 64), nn.ReLU(), nn.Linear(64, 10))

    def forward(self, pixels: torch.Tensor) -> torch.Tensor:
        return self.body(pixels / 16.0)


net = Net()
opt = torch.optim.Adam(net.parameters(), lr=3e-3)
deadline = time.monotonic() + 0.5 * float(os.environ.get("SELFPROG_TIME_BUDGET_S", "10"))
step = 0
while step < 600 and time.monotonic() < deadline:
    idx = torch.randint(0, len(x), (64,))
    loss = nn.functional.cross_entropy(net.body(x[idx]), y[idx])
    opt.zero_grad()
    loss.backward()
    opt.step()
    step += 1
    if step % 100 == 0:
        report.progress(step, loss=loss.item())
out = Path(os.environ["SELFPROG_OUT"])
torch.jit.script(net.eval()).save(str(out / "model.pt"))
```
'''


class ScriptedModel(LMGenerator):
    """An OpenAI-like model whose answers are scripted: the real prompt and parser around it."""

    name = "openai"
    model_name = "scripted"

    def __init__(self, answers: list[str]):
        super().__init__(GeneratorConfig())
        self.answers = list(answers)
        self.prompts: list[str] = []

    @property
    def context_tokens(self) -> int:
        return 100_000

    def complete(self, prompts, seed):
        out = []
        for prompt in prompts:
            self.prompts.append(prompt.text)
            out.append(GenerationCall("openai", "scripted", prompt.text, self.answers.pop(0)))
        return out


@pytest.mark.docker
def test_digits_evolved_from_its_spec_alone_reaches_an_ok_sub_model(tmp_path, docker_client,
                                                                    runtime_image):
    program = Program.load(ROOT / "programs" / "tasks" / "digits")
    cfg = load_config(None, {"program": str(program.root), "from_spec": True,
                             "budget.variants": 2, "slots.lookahead": 0})
    model = ScriptedModel([BROKEN, DRAFT])
    check_from_spec(cfg, program, model.name)
    store = Store(tmp_path / "run", create=True)
    store.init_run(program.root, cfg.model_dump_json())
    runner = DockerRunner(docker_client, runtime={"cpu": runtime_image})
    out = Evolution(cfg, store, program, runner, model, [Slot(0)]).run()
    reference = program.source_files()["train.py"]
    assert all(reference[:300] not in p and "The skeleton to complete" not in p
               for p in model.prompts), "the reference is never shown"
    assert "forgot to write the model" in model.prompts[1], "the broken draft's log is fed back"
    seed, broken, draft = store.variants()
    assert store.evaluations(variant_id=seed.id) == [], "the reference is never run"
    assert broken.value is None and draft.value is not None and draft.value > 0.8
    assert out.best_id == draft.id
    report = write_report(store, program).read_text()
    assert "Written from the spec" in report and "2 first drafts asked for" in report


@pytest.mark.docker
def test_selfprog_evolve_from_spec_with_an_openai_server_on_loopback(tmp_path, docker_client,
                                                                     runtime_image, monkeypatch):
    """The command a user runs: ``selfprog evolve --from-spec --generator openai`` against an
    OpenAI-compatible server (scripted, streaming, on loopback), real containers throughout."""
    import json

    from typer.testing import CliRunner

    from orchestrator.cli.app import app
    from tests.generators.scripted_server import Answer, Script, ScriptedServer

    for name in ("OPENAI_BASE_URL", "OPENAI_MODEL", "OPENAI_API_KEY"):
        monkeypatch.delenv(name, raising=False)
    runs = tmp_path / "runs"
    script = Script([Answer(text=BROKEN), Answer(text=DRAFT)])
    with ScriptedServer(script) as server:
        done = CliRunner().invoke(app, [
            "evolve", "--program", str(ROOT / "programs" / "tasks" / "digits"), "--from-spec",
            "--generator", "openai", "--variants", "2", "--run-id", "spec", "--no-live",
            "--set", f'runs_dir="{runs}"', "--set", "slots.lookahead=0",
            "--set", "slots.count=1", "--set", f'generator.openai.base_url="{server.v1}"'])
    assert done.exit_code == 0, done.output
    prompts = [json.dumps(r["messages"]) for r in script.requests if "messages" in r]
    assert len(prompts) == 2 and "forgot to write the model" in prompts[1]
    assert "def build_model" not in "".join(prompts), "the reference is never shown"
    summary = json.loads((runs / "spec" / "summary.json").read_text())
    assert summary["best"] is not None and summary["best"]["value"] > 0.8, summary
    assert summary["seed"]["value"] is None, "the reference is never run"
    assert "Written from the spec" in (runs / "spec" / "report.html").read_text()

"""Variants that change only train.py and export a model that forges its score: each ends
``invalid`` (never a score) because the model runs in its own container (split evaluation):

* codelm, reading ahead: the next byte read from the input with a 1e6 logit on it; the look-ahead
  check compares log-probabilities with a fixed tolerance, so no logit scale hides it.
* codelm, stateful: logits stored in a file mapped with ``aten::from_file(shared=True)`` under
  ``/tmp`` and replayed to the check call; a worker can write nothing, and ``/tmp`` is wiped.
* digits and diabetes: a parameterless forward that reads the held-out file with
  ``aten::from_file``; the model server has no ``/data`` and its worker may read only ``/out``
  and the Python install.

Each forger is first shown to work where the old, single-process evaluation let it (on the host,
with the file or ``/tmp`` within reach), so the test proves the defence, not a broken forger.
"""

from __future__ import annotations

import importlib.util
import json
import os
import textwrap
import uuid
from pathlib import Path

import numpy as np
import pytest
import torch

from orchestrator.containers.docker_runner import DockerRunner
from orchestrator.result import Status
from orchestrator.runner import RunRequest, Variant
from tests.programs.test_programs_sandbox import quick_copy

ROOT = Path(__file__).resolve().parents[2]
CODELM = ROOT / "programs" / "codelm"
TASKS = ROOT / "programs" / "tasks"

READS_AHEAD = '''
class Forger(torch.nn.Module):
    """Predicts byte t+1 by reading it from the input, with a huge logit."""

    def forward(self, idx: torch.Tensor) -> torch.Tensor:
        ahead = torch.cat([idx[:, 1:], idx[:, -1:]], dim=1)
        return torch.nn.functional.one_hot(ahead, 256).float() * 1e6
'''

STATEFUL = '''
class Forger(torch.nn.Module):
    """Reads ahead on scoring calls, stores its logits in a shared file, replays them to the
    look-ahead check (the call after each scoring call)."""

    def __init__(self, path: str = "/tmp/forger.state"):
        super().__init__()
        self.path = path

    def forward(self, idx: torch.Tensor) -> torch.Tensor:
        rows, width = idx.shape[0], idx.shape[1]
        size = 1 + 16 * 4096 * 256
        state = torch.from_file(self.path, True, size, dtype=torch.float32)
        calls = int(state[0].item())
        state[0] = float(calls + 1)
        n = rows * width * 256
        if calls % 2 == 1 and width > 1:
            return state[1:1 + n].view(rows, width, 256).clone()
        ahead = torch.cat([idx[:, 1:], idx[:, -1:]], dim=1)
        logits = torch.nn.functional.one_hot(ahead, 256).float() * 30.0
        state[1:1 + n] = logits.reshape(-1)
        return logits
'''

READS_FILE = '''
class Forger(torch.nn.Module):
    """No parameters: reads the held-out file's bytes and answers from them."""

    def __init__(self, path: str = "{path}", classes: int = {classes}):
        super().__init__()
        self.path = path
        self.classes = classes

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        raw = torch.from_file(self.path, False, {size} // 8, dtype=torch.int64)
        labels = raw[{offset} // 8:{offset} // 8 + x.shape[0]]
        if self.classes == 0:
            return labels.double().float()
        return torch.nn.functional.one_hot(labels % self.classes, self.classes).float() * 100.0
'''


def train_source(forger: str, files: dict[str, str] | None = None) -> str:
    """A variant's train.py: export the forger as TorchScript (and model.json for codelm)."""
    writes = "".join(f"(OUT / {name!r}).write_text({text!r})\n"
                     for name, text in (files or {}).items())
    return ("import os\nfrom pathlib import Path\n\nimport torch\n"
            + textwrap.dedent(forger)
            + '\nOUT = Path(os.environ["SELFPROG_OUT"])\n'
            + 'torch.jit.script(Forger()).save(str(OUT / "model.pt"))\n' + writes)


def forger_class(source: str, folder: Path):
    """The forger's class, imported from a file (TorchScript compiles from source files)."""
    path = folder / f"forger_{uuid.uuid4().hex[:8]}.py"
    path.write_text("import torch\n" + textwrap.dedent(source))
    spec = importlib.util.spec_from_file_location(path.stem, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.Forger


def raw_labels(npz: Path, dtype: str) -> tuple[Path, int, int]:
    """An uncompressed copy of the held-out file, and where its labels start: what the forger
    reads when the file is within its reach."""
    with np.load(npz) as d:
        y = d["y"].astype(dtype)
    raw = npz.parent / "raw.bin"
    raw.write_bytes(y.tobytes())
    return raw, 0, len(y) * 8


# -- the forgers work where the file or /tmp is in reach (host, one process) -------------------


def test_the_codelm_forgers_would_score_far_below_an_honest_model_if_unchecked(tmp_path):
    text = torch.tensor(list(b"def f(x):\n    return x + 1\n" * 40), dtype=torch.long)
    idx, target = text[None, :-1], text[None, 1:]
    for source in (READS_AHEAD, STATEFUL):
        forger = torch.jit.script(forger_class(source, tmp_path)(*(
            [str(tmp_path / "state")] if "path" in source else [])))
        logits = forger(idx)
        nats = torch.nn.functional.cross_entropy(logits[0, :-1], target[0, :-1]).item()
        assert nats < 0.01  # ~0 bits per byte; an honest byte model is near 3


def test_the_stateful_forger_replays_its_logits_when_it_can_keep_a_file(tmp_path):
    forger = torch.jit.script(forger_class(STATEFUL, tmp_path)(str(tmp_path / "state")))
    idx = torch.randint(0, 256, (2, 32))
    first = forger(idx)
    replay = forger(torch.zeros_like(idx))  # the "check" call gets the stored answer back
    assert torch.equal(first, replay)


@pytest.mark.parametrize("task, classes", [("digits", 10), ("diabetes", 0)])
def test_the_file_reading_forgers_answer_the_labels_when_the_file_is_in_reach(tmp_path, task,
                                                                              classes):
    npz = tmp_path / f"{task}.npz"
    npz.write_bytes((TASKS / task / "data" / "heldout" / f"{task}.npz").read_bytes())
    raw, offset, size = raw_labels(npz, "int64")
    forger = torch.jit.script(forger_class(READS_FILE.format(
        path=raw, classes=classes, size=size, offset=offset), tmp_path)())
    with np.load(npz) as d:
        x, y = torch.from_numpy(d["x"]), d["y"]
    out = forger(x).numpy()
    pred = out.argmax(1) if classes else out
    assert np.array_equal(pred.astype(np.int64), y.astype(np.int64))


# -- the same forgers through the real sandbox --------------------------------------------------


@pytest.fixture(scope="module")
def runner(docker_client, runtime_image) -> DockerRunner:
    return DockerRunner(docker_client, grace_s=1.0, linger_s=30, runtime={"cpu": runtime_image})


def run_variant(runner: DockerRunner, src: Path, tmp_path: Path, train: str):
    program = quick_copy(src, tmp_path / src.name, budget_s=5)
    variant = Variant(program, {**program.source_files(), "train.py": train})
    folder = tmp_path / "variant"
    result = runner.run(RunRequest(variant=variant, run_id=f"test-forgery-{uuid.uuid4().hex[:8]}",
                                   folder=folder))
    logs = {name: (folder / f"{name}.log").read_text() if (folder / f"{name}.log").exists()
            else "" for name in ("train", "eval", "serve")}
    events = [json.loads(line) for line in (folder / "events.jsonl").read_text().splitlines()]
    logs["errors"] = "\n".join(e["message"] for e in events
                               if e["type"] == "error" and e["stage"] == "eval")
    return result, logs


def assert_no_score(result, logs) -> None:
    assert result.status in (Status.INVALID, Status.CRASH), (result.status, result.error, logs)
    assert not result.metrics
    assert result.stages[0].status is Status.OK, logs["train"][-2000:]  # it did export


@pytest.mark.docker
@pytest.mark.slow
@pytest.mark.parametrize("forger, why", [
    (READS_AHEAD, "reads ahead"),
    (STATEFUL, "Permission denied"),  # the worker may not create /tmp/forger.state
], ids=["reads-ahead", "stateful"])
def test_codelm_forgers_end_invalid_in_the_sandbox(runner, tmp_path, forger, why):
    train = train_source(forger, {"model.json": '{"context": 64}'})
    result, logs = run_variant(runner, CODELM, tmp_path, train)
    assert_no_score(result, logs)
    assert "evaluator rejected" in result.error, result.error
    assert why in logs["errors"], logs["errors"]


@pytest.mark.docker
@pytest.mark.slow
@pytest.mark.parametrize("task, classes, offset", [("digits", 10, 14100), ("diabetes", 0, 2080)])
def test_task_models_that_read_held_out_files_end_invalid_in_the_sandbox(runner, tmp_path, task,
                                                                         classes, offset):
    forger = READS_FILE.format(path=f"/data/{task}.npz", classes=classes, size=20000,
                               offset=offset)
    result, logs = run_variant(runner, TASKS / task, tmp_path, train_source(forger))
    assert_no_score(result, logs)
    assert f"/data/{task}.npz" in logs["errors"], logs["errors"]


@pytest.mark.docker
@pytest.mark.slow
def test_the_model_server_has_no_held_out_data_and_cannot_write(runner, tmp_path):
    probe = '''
class Forger(torch.nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        seen = torch.from_file("/out/probe.bin", True, 8, dtype=torch.uint8)
        return torch.zeros(x.shape[0], 10) + seen.float().sum()
'''
    result, logs = run_variant(runner, TASKS / "digits", tmp_path, train_source(probe))
    assert_no_score(result, logs)
    assert "/out/probe.bin" in logs["errors"], logs["errors"]
    assert not (tmp_path / "variant" / "artifacts" / "probe.bin").exists()
    assert "listening" in logs["serve"], logs["serve"][-2000:]
    assert os.path.exists(tmp_path / "variant" / "serve.log")

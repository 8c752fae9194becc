"""codelm as a bare process: trains within its budget, exports TorchScript, is scored honestly.

The lead's GPU check runs train.py the same way (no Docker), so this is also that contract.
"""

from __future__ import annotations

import importlib.util
import itertools
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from orchestrator.generators.inprocess import InProcessCompleter
from orchestrator.generators.searchspace import find_settings
from orchestrator.generators.testing import export_tiny
from tests.sandbox.serving import serving

ROOT = Path(__file__).resolve().parents[2]
CODELM = ROOT / "programs" / "codelm"
PROGRAMS = [CODELM, *sorted((ROOT / "programs" / "tasks").glob("*/"))]


def bare(script: Path, **env: str) -> tuple[int, list[dict], str]:
    """Run a script as a bare process; an evaluator gets its model server (split evaluation)."""
    if script.name == "evaluate.py" and "SELFPROG_SOCKET" not in env:
        out = Path(env["SELFPROG_OUT"])
        with serving(script.parent, out, out.parent / f"{out.name}.sock") as extra:
            return bare(script, **{**env, **extra})
    path = os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))
    full = {**os.environ, "PYTHONPATH": path, "SELFPROG_SEED": "0", **env}
    done = subprocess.run([sys.executable, str(script)], env=full, capture_output=True,
                          text=True, timeout=180, check=False)
    msgs = [json.loads(line) for line in done.stdout.splitlines() if line.startswith("{")]
    return done.returncode, msgs, done.stderr


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> tuple[Path, list[dict]]:
    out = tmp_path_factory.mktemp("codelm-out")
    rc, msgs, err = bare(CODELM / "train.py", SELFPROG_OUT=str(out), SELFPROG_TIME_BUDGET_S="3",
                         SELFPROG_DATA=str(CODELM / "data" / "train"))
    assert rc == 0, err[-2000:]
    return out, msgs


@pytest.mark.slow
def test_train_exports_torchscript_and_reports_throughput(trained):
    out, msgs = trained
    assert {"model.pt", "model.json"} <= {p.name for p in out.iterdir()}
    assert {m["path"] for m in msgs if m["type"] == "artifact"} == {"model.pt", "model.json"}
    last = [m for m in msgs if m["type"] == "progress"][-1]["metrics"]
    assert last["bytes_per_s"] > 0 and last["loss"] < 5.545  # below a uniform guess, ln 256
    assert json.loads((out / "model.json").read_text())["context"] > 0


@pytest.mark.slow
def test_evaluator_scores_held_out_bits_per_byte_and_the_model_samples(trained):
    out, _ = trained
    rc, msgs, err = bare(CODELM / "evaluate.py", SELFPROG_OUT=str(out),
                         SELFPROG_DATA=str(CODELM / "data" / "heldout"))
    assert rc == 0, err[-2000:]
    metrics = [m for m in msgs if m["type"] == "result"][0]["metrics"]
    assert 1.0 < metrics["val_bpb"] < 8.0  # 8 bits per byte is a uniform guess
    assert 0.0 <= metrics["line_prefix_acc"] <= 1.0 and metrics["params"] > 1000
    text = InProcessCompleter.load(out).complete("import os\n", 50, seed=0)
    assert len(text) > 10


@pytest.mark.slow
def test_evaluator_refuses_an_export_with_the_wrong_interface(tmp_path):
    export_tiny(tmp_path, context=16)
    meta = json.loads((tmp_path / "model.json").read_text())
    (tmp_path / "model.json").write_text(json.dumps({**meta, "context": "all of it"}))
    rc, msgs, _ = bare(CODELM / "evaluate.py", SELFPROG_OUT=str(tmp_path),
                       SELFPROG_DATA=str(CODELM / "data" / "heldout"))
    assert rc == 1 and [m for m in msgs if m["type"] == "error"]
    assert not [m for m in msgs if m["type"] == "result"]
    torch.jit.script(torch.nn.Linear(4, 4)).save(str(tmp_path / "model.pt"))  # not a byte LM
    (tmp_path / "model.json").write_text(json.dumps({**meta, "context": 16}))
    rc, msgs, _ = bare(CODELM / "evaluate.py", SELFPROG_OUT=str(tmp_path),
                       SELFPROG_DATA=str(CODELM / "data" / "heldout"))
    assert rc == 1 and "forward" in [m for m in msgs if m["type"] == "error"][0]["message"]


class _ReadsAhead(torch.nn.Module):
    """A forger: predicts byte t+1 by reading it from the input (it scored 0.019 bits per byte)."""

    def forward(self, idx: torch.Tensor) -> torch.Tensor:
        ahead = torch.cat([idx[:, 1:], idx[:, -1:]], dim=1)
        return torch.nn.functional.one_hot(ahead, 256).float() * 30.0


class _Remembers(torch.nn.Module):
    """A forger that honest-looks per call but would replay what an earlier call saw."""

    def __init__(self):
        super().__init__()
        self.calls = torch.zeros(1)

    def forward(self, idx: torch.Tensor) -> torch.Tensor:
        self.calls += 1.0
        return torch.zeros(idx.shape[0], idx.shape[1], 256) + self.calls[0]


@pytest.mark.slow
def test_a_model_that_reads_ahead_cannot_forge_its_bits_per_byte(tmp_path):
    torch.jit.script(_ReadsAhead()).save(str(tmp_path / "model.pt"))
    (tmp_path / "model.json").write_text(json.dumps({"context": 128}))
    rc, msgs, _ = bare(CODELM / "evaluate.py", SELFPROG_OUT=str(tmp_path),
                       SELFPROG_DATA=str(CODELM / "data" / "heldout"))
    assert rc == 1 and not [m for m in msgs if m["type"] == "result"]
    assert "reads ahead" in [m for m in msgs if m["type"] == "error"][0]["message"]


def test_every_call_of_the_evaluator_gets_a_fresh_model(tmp_path):
    spec = importlib.util.spec_from_file_location("codelm_evaluate", CODELM / "evaluate.py")
    evaluate = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(evaluate)
    out = tmp_path / "out"
    out.mkdir()
    torch.jit.script(_Remembers()).save(str(out / "model.pt"))
    with serving(CODELM, out, tmp_path / "m.sock") as env:
        os.environ["SELFPROG_SOCKET"] = env["SELFPROG_SOCKET"]
        try:
            model = evaluate.Model()
            idx = torch.zeros(1, 4, dtype=torch.long)
            assert [float(model(idx)[0, 0, 0]) for _ in range(3)] == [1.0, 1.0, 1.0]
        finally:
            del os.environ["SELFPROG_SOCKET"]


@pytest.mark.parametrize("program", PROGRAMS, ids=lambda p: p.name)
def test_every_search_setting_is_declared_and_its_value_is_in_range(program):
    text = (program / "train.py").read_text()
    settings = find_settings("train.py", text)
    block = [line.split(" = ")[0] for line in text.splitlines()
             if "# search:" in line and line[:1].isupper()]
    assert len(settings) == len(block) >= 5
    for s in settings:
        if s.kind == "choice":
            assert s.value in s.args, s.name
        else:
            assert s.args[0] <= s.value <= s.args[1], s.name


def _seed_module():
    spec = importlib.util.spec_from_file_location("codelm_train_corners", CODELM / "train.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.slow
def test_the_corners_of_codelm_search_space_train_and_export():
    train = _seed_module()
    space = {s.name: s for s in find_settings("train.py", (CODELM / "train.py").read_text())}
    low = {n: space[n].args[0] for n in ("N_LAYER", "N_HEAD", "HEAD_DIM", "MLP_RATIO", "CONTEXT")}
    high = {n: space[n].args[-1] for n in low}
    # Width and heads at both ends (the divisibility risk), then everything at its largest.
    corners = [{**low, "N_HEAD": h, "HEAD_DIM": d, "CONTEXT": c}
               for h, d, c in itertools.product(*((low[n], high[n])
                                                  for n in ("N_HEAD", "HEAD_DIM", "CONTEXT")))]
    for corner in [*corners, high]:
        for name, value in corner.items():
            setattr(train, name, int(value))
        for activation in space["ACTIVATION"].args if corner is high else ["gelu"]:
            train.ACTIVATION = activation
            model = train.build_model()
            x = torch.randint(0, 256, (2, train.CONTEXT if corner is high else 8))
            model(x).logsumexp(-1).mean().backward()
        scripted = torch.jit.script(model.eval())
        assert scripted(x[:, :5]).shape == (2, 5, 256)

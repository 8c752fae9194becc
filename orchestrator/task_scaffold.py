"""``selfprog new-task``: scaffold a task folder that a person fills in and that runs as it is.

The scaffold is a working array task: put ``data.npz`` (``x`` features, ``y`` labels or targets)
into ``data/train`` and ``data/heldout``, describe the task in ``task.toml``, and ``selfprog run``
trains the skeleton MLP and scores it with the scaffolded trusted evaluator (accuracy for a
classification, RMSE for a regression). Edit any of it: it is a starting point, not a framework.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Literal

from orchestrator.errors import ConfigError

Kind = Literal["classification", "regression"]
_METRIC = {"classification": ("accuracy", "maximize"), "regression": ("rmse", "minimize")}

_TASK = '''[task]
description = """TODO: what the sub-model must do, in words a language model will read. Say what \
one example is, what is predicted, and what makes the task hard."""
train_data = """SELFPROG_DATA/data.npz: x float32 [N, F] features, y {y_doc} [N]. \
numpy.load, no pickles. TODO: name the features and their units."""
export = """SELFPROG_OUT/model.pt: a TorchScript module; forward(x: float32 [N, F]) -> {out_doc}."""
reference = "train.py"
source = "TODO: where the data comes from, and its licence."
'''

_PROGRAM = '''[program]
name = "{name}"
entrypoint = "train.py"
evaluator = "evaluate.py"
editable = ["train.py"]
description = "TODO: one line; the full spec is in task.toml."

[metric]
name = "{metric}"
goal = "{goal}"

[resources]
cpus = 2.0
memory = "1g"
gpus = 0
timeout_s = 90
time_budget_s = 20
pids = 128
disk = "256m"

[data]
train = "data/train"
heldout = "data/heldout"
'''

_TRAIN = '''"""Skeleton solution of the {name} task: a small MLP. Editable; exports TorchScript."""

from __future__ import annotations

import os
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from sandbox import report

# --- search space ---------------------------------------------------------------------------
HIDDEN = 64  # search: choice[16, 32, 64, 128, 256]
LEARNING_RATE = 1e-3  # search: log[1e-4, 3e-2]
WEIGHT_DECAY = 1e-4  # search: float[0, 0.01]
BATCH_SIZE = 64  # search: choice[16, 32, 64, 128, 256]
EPOCHS = 30  # search: int[5, 200]
# ---------------------------------------------------------------------------------------------
CLASSIFY = {classify}


class Model(nn.Module):
    def __init__(self, x: torch.Tensor, outputs: int):
        super().__init__()
        self.classify = CLASSIFY  # an attribute: TorchScript cannot read a global flag
        self.register_buffer("mean", x.mean(0))
        self.register_buffer("std", x.std(0).clamp_min(1e-6))
        self.body = nn.Sequential(nn.Linear(x.shape[1], HIDDEN), nn.ReLU(),
                                  nn.Linear(HIDDEN, outputs))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.body((x - self.mean) / self.std)
        return out if self.classify else out.squeeze(-1)


def main() -> None:
    start = time.monotonic()
    budget = float(os.environ.get("SELFPROG_TIME_BUDGET_S", "20"))
    out = Path(os.environ.get("SELFPROG_OUT", "out"))
    out.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(int(os.environ.get("SELFPROG_SEED", "0")))
    with np.load(Path(os.environ.get("SELFPROG_DATA", "data/train")) / "data.npz") as d:
        x = torch.from_numpy(d["x"]).float()
        y = torch.from_numpy(d["y"]).long() if CLASSIFY else torch.from_numpy(d["y"]).float()
    model = Model(x, int(y.max()) + 1 if CLASSIFY else 1)
    loss_fn = F.cross_entropy if CLASSIFY else F.mse_loss
    opt = torch.optim.AdamW(model.parameters(), lr=LEARNING_RATE, weight_decay=WEIGHT_DECAY)
    step = 0
    for epoch in range(EPOCHS):
        if time.monotonic() - start > 0.9 * budget:
            break
        for idx in torch.randperm(len(x)).split(BATCH_SIZE):
            loss = loss_fn(model(x[idx]), y[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            step += 1
        report.progress(step=step, epoch=epoch, loss=loss.item())
    torch.jit.script(model.eval()).save(str(out / "model.pt"))
    report.artifact("model.pt")


if __name__ == "__main__":
    main()
'''

_EVALUATE = '''"""Trusted evaluator of the {name} task: {metric} on the held-out part.

Split evaluation: the exported model (model.pt, TorchScript: code the variant wrote) runs in its
own container behind serve.py; this process holds the held-out data, sends only the inputs, and
scores what comes back. Not editable by a generator.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import numpy as np

from sandbox import remote, report

CLASSIFY = {classify}


def main() -> None:
    with np.load(Path(os.environ.get("SELFPROG_DATA", "data/heldout")) / "data.npz") as d:
        x, y = d["x"].astype(np.float32), d["y"]
    try:
        answer = remote.remote_model()(x=x)
        pred = answer.get("y")
        if not isinstance(pred, np.ndarray) or len(pred) != len(x):
            raise remote.RemoteError("predictions of the wrong shape")
        pred = remote.expect(answer, "y", tuple(pred.shape))
    except remote.RemoteError as exc:
        report.error("model", str(exc))
        sys.exit(1)
    if CLASSIFY:
        if pred.ndim != 2:
            report.error("model", f"expected logits [N, C], got shape {{pred.shape}}")
            sys.exit(1)
        report.result(accuracy=float((pred.argmax(-1) == y.astype(np.int64)).mean()))
    else:
        diff = pred.reshape(len(x), -1)[:, 0].astype(np.float64) - y.astype(np.float64)
        report.result(rmse=float(np.sqrt(np.mean(diff ** 2))))


if __name__ == "__main__":
    main()
'''

_SERVE = '''"""Model side of the split evaluation (trusted, never editable): serves model.pt from
its own container, one fresh, Landlock-restricted worker per request (see sandbox/remote.py)."""

from sandbox import remote

remote.serve(remote.torchscript())
'''

_DATA_README = "Put data.npz here: x float32 [N, F], y [N] (numpy.savez, no object arrays).\n"


def new_task(parent: Path, name: str, kind: Kind = "classification") -> Path:
    """Create ``parent/name`` with task.toml, program.toml, train.py, evaluate.py, serve.py (the
    model side of the split evaluation) and the data folders.

    Returns:
        The new task folder.

    Raises:
        ConfigError: the name is not a valid program name, or the folder already exists.
    """
    if not re.fullmatch(r"[a-z0-9][a-z0-9_.-]{0,63}", name):
        raise ConfigError(f"task name {name!r}: use lower-case letters, digits, '_', '.', '-'")
    if kind not in _METRIC:
        raise ConfigError(f"task kind {kind!r}: choose classification or regression")
    root = Path(parent) / name
    if root.exists():
        raise ConfigError(f"{root} already exists; choose another name or remove it")
    metric, goal = _METRIC[kind]
    classify = kind == "classification"
    fields = {"name": name, "metric": metric, "goal": goal, "classify": classify,
              "y_doc": "int64 class labels 0..C-1" if classify else "float32 targets",
              "out_doc": "logits float32 [N, C]" if classify else "predictions float32 [N]"}
    for part in ("train", "heldout"):
        (root / "data" / part).mkdir(parents=True)
        (root / "data" / part / "README.txt").write_text(_DATA_README)
    (root / "task.toml").write_text(_TASK.format(**fields))
    (root / "program.toml").write_text(_PROGRAM.format(**fields))
    (root / "train.py").write_text(_TRAIN.format(**fields))
    (root / "evaluate.py").write_text(_EVALUATE.format(**fields))
    (root / "serve.py").write_text(_SERVE)
    return root

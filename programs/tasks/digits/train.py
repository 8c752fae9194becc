"""Reference solution of the digits task: an MLP that classifies 8x8 handwritten digits.

Editable. The trusted evaluate.py loads only the TorchScript model this exports (model.pt):
forward(x: float32 [N, 64], raw pixel counts 0..16) -> logits float32 [N, 10].
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from sandbox import report

# --- search space --------------------------------------------------------------------------------
HIDDEN = 64  # search: choice[32, 64, 128, 256]
N_HIDDEN_LAYERS = 1  # search: int[1, 3]
ACTIVATION = "relu"  # search: choice[gelu, relu, silu]
DROPOUT = 0.1  # search: float[0, 0.5]
LEARNING_RATE = 1e-3  # search: log[1e-4, 3e-2]
WEIGHT_DECAY = 1e-4  # search: float[0, 0.01]
BATCH_SIZE = 64  # search: choice[16, 32, 64, 128, 256]
EPOCHS = 30  # search: int[5, 200]
# --------------------------------------------------------------------------------------------------

ACTIVATIONS = {"gelu": nn.GELU, "relu": nn.ReLU, "silu": nn.SiLU}


def build_model() -> nn.Module:
    layers: list[nn.Module] = []
    width = 64
    for _ in range(N_HIDDEN_LAYERS):
        layers += [nn.Linear(width, HIDDEN), ACTIVATIONS[ACTIVATION](), nn.Dropout(DROPOUT)]
        width = HIDDEN
    layers.append(nn.Linear(width, 10))
    return nn.Sequential(*layers)


class Classifier(nn.Module):
    """Scales raw pixel counts itself, so the exported model takes the data as it comes."""

    def __init__(self, body: nn.Module):
        super().__init__()
        self.body = body

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x / 16.0)


def main() -> None:
    start = time.monotonic()
    budget = float(os.environ.get("SELFPROG_TIME_BUDGET_S", "20"))
    out = Path(os.environ.get("SELFPROG_OUT", "out"))
    out.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(int(os.environ.get("SELFPROG_SEED", "0")))
    with np.load(Path(os.environ.get("SELFPROG_DATA", "data/train")) / "digits.npz") as d:
        x, y = torch.from_numpy(d["x"]).float(), torch.from_numpy(d["y"]).long()

    model = Classifier(build_model())
    opt = torch.optim.AdamW(model.parameters(), lr=LEARNING_RATE, weight_decay=WEIGHT_DECAY)
    step = 0
    for epoch in range(EPOCHS):
        if time.monotonic() - start > 0.9 * budget:
            break
        model.train()
        for idx in torch.randperm(len(x)).split(BATCH_SIZE):
            loss = F.cross_entropy(model(x[idx]), y[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            step += 1
        with torch.no_grad():
            acc = (model.eval()(x).argmax(1) == y).float().mean().item()
        report.progress(step=step, epoch=epoch, loss=loss.item(), train_acc=acc)

    torch.jit.script(model.eval()).save(str(out / "model.pt"))
    report.artifact("model.pt")


if __name__ == "__main__":
    main()

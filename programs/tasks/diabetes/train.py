"""Reference solution of the diabetes task: an MLP regressor of disease progression.

Editable. The trusted evaluate.py loads only the TorchScript model this exports (model.pt):
forward(x: float32 [N, 10], raw features) -> float32 [N], the predicted progression.
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
HIDDEN = 32  # search: choice[8, 16, 32, 64, 128]
N_HIDDEN_LAYERS = 2  # search: int[0, 3]
ACTIVATION = "relu"  # search: choice[gelu, relu, silu, tanh]
DROPOUT = 0.0  # search: float[0, 0.5]
LEARNING_RATE = 3e-3  # search: log[1e-4, 3e-2]
WEIGHT_DECAY = 1e-3  # search: log[1e-5, 1e-1]
BATCH_SIZE = 32  # search: choice[16, 32, 64, 128, 353]
EPOCHS = 20  # search: int[10, 500]
# --------------------------------------------------------------------------------------------------

ACTIVATIONS = {"gelu": nn.GELU, "relu": nn.ReLU, "silu": nn.SiLU, "tanh": nn.Tanh}


class Regressor(nn.Module):
    """Standardises features and target inside the model, so it takes and gives raw units."""

    def __init__(self, x: torch.Tensor, y: torch.Tensor):
        super().__init__()
        self.register_buffer("x_mean", x.mean(0))
        self.register_buffer("x_std", x.std(0).clamp_min(1e-6))
        self.register_buffer("y_mean", y.mean())
        self.register_buffer("y_std", y.std())
        layers: list[nn.Module] = []
        width = x.shape[1]
        for _ in range(N_HIDDEN_LAYERS):
            layers += [nn.Linear(width, HIDDEN), ACTIVATIONS[ACTIVATION](), nn.Dropout(DROPOUT)]
            width = HIDDEN
        layers.append(nn.Linear(width, 1))
        self.body = nn.Sequential(*layers)

    def standard(self, x: torch.Tensor) -> torch.Tensor:
        return self.body((x - self.x_mean) / self.x_std).squeeze(-1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.standard(x) * self.y_std + self.y_mean


def main() -> None:
    start = time.monotonic()
    budget = float(os.environ.get("SELFPROG_TIME_BUDGET_S", "20"))
    out = Path(os.environ.get("SELFPROG_OUT", "out"))
    out.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(int(os.environ.get("SELFPROG_SEED", "0")))
    with np.load(Path(os.environ.get("SELFPROG_DATA", "data/train")) / "diabetes.npz") as d:
        x, y = torch.from_numpy(d["x"]).float(), torch.from_numpy(d["y"]).float()

    model = Regressor(x, y)
    target = (y - model.y_mean) / model.y_std
    opt = torch.optim.AdamW(model.parameters(), lr=LEARNING_RATE, weight_decay=WEIGHT_DECAY)
    step = 0
    for epoch in range(EPOCHS):
        if time.monotonic() - start > 0.9 * budget:
            break
        model.train()
        for idx in torch.randperm(len(x)).split(BATCH_SIZE):
            loss = F.mse_loss(model.standard(x[idx]), target[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            step += 1
        if epoch % 10 == 0 or epoch == EPOCHS - 1:
            with torch.no_grad():
                rmse = (model.eval()(x) - y).pow(2).mean().sqrt().item()
            report.progress(step=step, epoch=epoch, loss=loss.item(), train_rmse=rmse)

    torch.jit.script(model.eval()).save(str(out / "model.pt"))
    report.artifact("model.pt")


if __name__ == "__main__":
    main()

"""Reference solution of the sorting task: a small transformer that sorts sequences of tokens.

Editable. The trusted evaluate.py loads only the TorchScript model this exports (model.pt):
forward(x: int64 [N, 10], tokens 0..15) -> logits float32 [N, 10, 16] over the sorted sequence.
Sorting needs every output position to compare its input with all the others: one round of
attention over the whole sequence (no causal mask) can count how many tokens are smaller.
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
WIDTH = 64  # search: choice[32, 64, 128]
N_LAYER = 2  # search: int[1, 4]
N_HEAD = 4  # search: choice[1, 2, 4, 8]
LEARNING_RATE = 3e-3  # search: log[1e-4, 1e-2]
WEIGHT_DECAY = 0.0  # search: float[0, 0.1]
BATCH_SIZE = 128  # search: choice[32, 64, 128, 256, 512]
EPOCHS = 20  # search: int[2, 200]
# --------------------------------------------------------------------------------------------------

LENGTH, VOCAB = 10, 16


class Sorter(nn.Module):
    def __init__(self):
        super().__init__()
        self.tok = nn.Embedding(VOCAB, WIDTH)
        self.pos = nn.Parameter(torch.zeros(LENGTH, WIDTH))
        layer = nn.TransformerEncoderLayer(WIDTH, N_HEAD, 4 * WIDTH, dropout=0.0,
                                           batch_first=True, norm_first=True)
        self.encoder = nn.TransformerEncoder(layer, N_LAYER, enable_nested_tensor=False)
        self.head = nn.Linear(WIDTH, VOCAB)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.encoder(self.tok(x) + self.pos))


def main() -> None:
    start = time.monotonic()
    budget = float(os.environ.get("SELFPROG_TIME_BUDGET_S", "20"))
    out = Path(os.environ.get("SELFPROG_OUT", "out"))
    out.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(int(os.environ.get("SELFPROG_SEED", "0")))
    with np.load(Path(os.environ.get("SELFPROG_DATA", "data/train")) / "sorting.npz") as d:
        x, y = torch.from_numpy(d["x"]).long(), torch.from_numpy(d["y"]).long()

    model = Sorter()
    opt = torch.optim.AdamW(model.parameters(), lr=LEARNING_RATE, weight_decay=WEIGHT_DECAY)
    step = 0
    for epoch in range(EPOCHS):
        model.train()
        for idx in torch.randperm(len(x)).split(BATCH_SIZE):
            if time.monotonic() - start > 0.85 * budget:
                break
            loss = F.cross_entropy(model(x[idx]).reshape(-1, VOCAB), y[idx].reshape(-1))
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            step += 1
        report.progress(step=step, epoch=epoch, loss=loss.item())
        if time.monotonic() - start > 0.85 * budget:
            break

    torch.jit.script(model.eval()).save(str(out / "model.pt"))
    report.artifact("model.pt")


if __name__ == "__main__":
    main()

"""TRAIN stage (editable): fit a linear model to the training points with torch, export weights."""

import os
from pathlib import Path

import torch

from sandbox import report

data = Path(os.environ.get("SELFPROG_DATA", "data/train"))
out = Path(os.environ.get("SELFPROG_OUT", "out"))
torch.manual_seed(int(os.environ.get("SELFPROG_SEED", "0")))

# The search space: what `mutate` may change (and what a model is pointed at first).
LEARNING_RATE = 0.1  # search: log[1e-3, 1.0]
STEPS = 200  # search: int[20, 1000]
MOMENTUM = 0.0  # search: float[0, 0.95]

rows = [line.split(",") for line in (data / "points.csv").read_text().splitlines()[1:]]
table = torch.tensor([[float(v) for v in row] for row in rows])
x, y = table[:, :3], table[:, 3:]

model = torch.nn.Linear(3, 1)
optimizer = torch.optim.SGD(model.parameters(), lr=LEARNING_RATE, momentum=MOMENTUM)
for step in range(STEPS):
    loss = torch.nn.functional.mse_loss(model(x), y)
    optimizer.zero_grad()
    loss.backward()
    optimizer.step()
    if step % 50 == 0:
        report.progress(step=step, loss=loss.item())

out.mkdir(parents=True, exist_ok=True)
torch.save(model.state_dict(), out / "model.pt")
report.artifact("model.pt")

"""TRAIN stage (editable): fit a linear model to the training points with torch, export weights."""

import os
from pathlib import Path

import torch

from sandbox import report

data = Path(os.environ.get("SELFPROG_DATA", "data/train"))
out = Path(os.environ.get("SELFPROG_OUT", "out"))
torch.manual_seed(int(os.environ.get("SELFPROG_SEED", "0")))

rows = [line.split(",") for line in (data / "points.csv").read_text().splitlines()[1:]]
table = torch.tensor([[float(v) for v in row] for row in rows])
x, y = table[:, :3], table[:, 3:]

model = torch.nn.Linear(3, 1)
optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
for step in range(200):
    loss = torch.nn.functional.mse_loss(model(x), y)
    optimizer.zero_grad()
    loss.backward()
    optimizer.step()
    if step % 50 == 0:
        report.progress(step=step, loss=loss.item())

out.mkdir(parents=True, exist_ok=True)
torch.save(model.state_dict(), out / "model.pt")
report.artifact("model.pt")

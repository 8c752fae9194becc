"""EVAL stage (trusted, never editable): held-out MSE of the exported linear model.

The artifact was written by untrusted code, so it is loaded with ``weights_only=True`` (no
pickled objects run) and its shape is checked before use.
"""

import os
import sys
from pathlib import Path

import torch

from sandbox import report

data = Path(os.environ.get("SELFPROG_DATA", "data/heldout"))
out = Path(os.environ.get("SELFPROG_OUT", "out"))

try:
    state = torch.load(out / "model.pt", weights_only=True)
    model = torch.nn.Linear(3, 1)
    model.load_state_dict(state)
except (OSError, RuntimeError, KeyError, ValueError) as exc:
    report.error("artifact", f"model.pt is missing or not a 3->1 linear model: {exc}")
    sys.exit(1)

rows = [line.split(",") for line in (data / "points.csv").read_text().splitlines()[1:]]
table = torch.tensor([[float(v) for v in row] for row in rows])
with torch.no_grad():
    mse = torch.nn.functional.mse_loss(model(table[:, :3]), table[:, 3:]).item()
report.result(mse=mse)

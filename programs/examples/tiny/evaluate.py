"""EVAL stage (trusted, never editable): held-out MSE of the exported linear model.

Split evaluation: serve.py loads the artifact (``weights_only=True``, a 3->1 linear model) in its
own container; this process holds the held-out points, sends only the inputs and scores the
predictions that come back.
"""

import os
import sys
from pathlib import Path

import numpy as np

from sandbox import remote, report

data = Path(os.environ.get("SELFPROG_DATA", "data/heldout"))
rows = [line.split(",") for line in (data / "points.csv").read_text().splitlines()[1:]]
table = np.array([[float(v) for v in row] for row in rows], dtype=np.float32)
try:
    pred = remote.expect(remote.remote_model()(x=table[:, :3]), "y", (len(table), 1))
except remote.RemoteError as exc:
    report.error("artifact", f"model.pt is missing or not a 3->1 linear model: {exc}")
    sys.exit(1)
report.result(mse=float(((pred.astype(np.float64) - table[:, 3:]) ** 2).mean()))

"""Trusted evaluator of the diabetes task: held-out RMSE (and R^2) of the exported regressor.

Split evaluation: the exported model (model.pt, TorchScript: code the variant wrote) runs in its
own container behind serve.py; this process holds the held-out data, sends only the features, and
scores the predictions that come back. A model that fails, hangs, or returns the wrong shape or a
non-finite value is an error, not a score.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import numpy as np

from sandbox import remote, report


def fail(kind: str, message: str) -> None:
    report.error(kind, message)
    sys.exit(1)


def main() -> None:
    with np.load(Path(os.environ.get("SELFPROG_DATA", "data/heldout")) / "diabetes.npz") as d:
        x, y = d["x"].astype(np.float32), d["y"].astype(np.float64)
    try:
        answer = remote.remote_model()(x=x)
        pred = remote.expect(answer, "y", (len(x),))
    except remote.RemoteError as exc:
        fail("model", str(exc))
    err = pred.astype(np.float64) - y
    mse = float((err**2).mean())
    report.result(
        rmse=mse**0.5,
        r2=1.0 - mse / float(((y - y.mean()) ** 2).mean()),
        mae=float(np.abs(err).mean()),
        params=remote.count(answer),
    )


if __name__ == "__main__":
    main()

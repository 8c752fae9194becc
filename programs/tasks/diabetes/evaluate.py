"""Trusted evaluator of the diabetes task: held-out RMSE (and R^2) of the exported regressor.

Loads model.pt (TorchScript) and never the variant's code; a model that fails or returns the
wrong shape or a non-finite value is an error, not a score.
"""

from __future__ import annotations

import os
import sys
import warnings
from pathlib import Path

import numpy as np
import torch

from sandbox import report


def fail(kind: str, message: str) -> None:
    report.error(kind, message)
    sys.exit(1)


def main() -> None:
    out = Path(os.environ.get("SELFPROG_OUT", "out"))
    with np.load(Path(os.environ.get("SELFPROG_DATA", "data/heldout")) / "diabetes.npz") as d:
        x, y = torch.from_numpy(d["x"]).float(), torch.from_numpy(d["y"]).double()
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            model = torch.jit.load(str(out / "model.pt"), map_location="cpu").eval()
        with torch.no_grad():
            pred = model(x)
    except (OSError, RuntimeError, ValueError) as exc:
        fail("model", f"model.pt could not be loaded or run: {exc}")
    if not isinstance(pred, torch.Tensor) or tuple(pred.shape) != (len(x),):
        fail("model", f"expected predictions of shape {(len(x),)}")
    if not torch.isfinite(pred).all():
        fail("model", "the predictions are not all finite")
    err = pred.double() - y
    mse = err.pow(2).mean().item()
    report.result(
        rmse=mse**0.5,
        r2=1.0 - mse / (y - y.mean()).pow(2).mean().item(),
        mae=err.abs().mean().item(),
        params=sum(p.numel() for p in model.parameters()),
    )


if __name__ == "__main__":
    main()

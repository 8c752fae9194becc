"""Trusted evaluator of the digits task: held-out accuracy of the exported classifier.

Loads model.pt (TorchScript) and never the variant's code; a model that fails or returns the
wrong shape is an error, not a score.
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
    with np.load(Path(os.environ.get("SELFPROG_DATA", "data/heldout")) / "digits.npz") as d:
        x, y = torch.from_numpy(d["x"]).float(), torch.from_numpy(d["y"]).long()
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            model = torch.jit.load(str(out / "model.pt"), map_location="cpu").eval()
        with torch.no_grad():
            logits = model(x)
    except (OSError, RuntimeError, ValueError) as exc:
        fail("model", f"model.pt could not be loaded or run: {exc}")
    if not isinstance(logits, torch.Tensor) or tuple(logits.shape) != (len(x), 10):
        fail("model", f"expected logits of shape {(len(x), 10)}")
    if not torch.isfinite(logits).all():
        fail("model", "the logits are not all finite")
    pred = logits.argmax(1)
    per_class = [(pred[y == c] == c).float().mean().item() for c in range(10)]
    report.result(
        accuracy=(pred == y).float().mean().item(),
        worst_class_accuracy=min(per_class),
        params=sum(p.numel() for p in model.parameters()),
    )


if __name__ == "__main__":
    main()

"""Trusted evaluator of the sorting task: how much of each held-out sequence comes out sorted.

Loads model.pt (TorchScript) and never the variant's code. The held-out sequences were generated
from a seed the train stage never had, and none of them is in the train part.
"""

from __future__ import annotations

import os
import sys
import warnings
from pathlib import Path

import numpy as np
import torch

from sandbox import report

LENGTH, VOCAB = 10, 16


def fail(kind: str, message: str) -> None:
    report.error(kind, message)
    sys.exit(1)


def main() -> None:
    out = Path(os.environ.get("SELFPROG_OUT", "out"))
    with np.load(Path(os.environ.get("SELFPROG_DATA", "data/heldout")) / "sorting.npz") as d:
        x, y = torch.from_numpy(d["x"]).long(), torch.from_numpy(d["y"]).long()
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            model = torch.jit.load(str(out / "model.pt"), map_location="cpu").eval()
        with torch.no_grad():
            logits = model(x)
    except (OSError, RuntimeError, ValueError) as exc:
        fail("model", f"model.pt could not be loaded or run: {exc}")
    if not isinstance(logits, torch.Tensor) or tuple(logits.shape) != (len(x), LENGTH, VOCAB):
        fail("model", f"expected logits of shape {(len(x), LENGTH, VOCAB)}")
    right = logits.argmax(-1) == y
    report.result(
        token_acc=right.float().mean().item(),
        seq_acc=right.all(1).float().mean().item(),
        params=sum(p.numel() for p in model.parameters()),
    )


if __name__ == "__main__":
    main()

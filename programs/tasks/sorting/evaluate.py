"""Trusted evaluator of the sorting task: how much of each held-out sequence comes out sorted.

Split evaluation: the exported model (model.pt, TorchScript: code the variant wrote) runs in its
own container behind serve.py; this process holds the held-out data, sends only the sequences,
and scores the logits that come back. The held-out sequences were generated
from a seed the train stage never had, and none of them is in the train part.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import numpy as np

from sandbox import remote, report

LENGTH, VOCAB = 10, 16


def fail(kind: str, message: str) -> None:
    report.error(kind, message)
    sys.exit(1)


def main() -> None:
    with np.load(Path(os.environ.get("SELFPROG_DATA", "data/heldout")) / "sorting.npz") as d:
        x, y = d["x"].astype(np.int64), d["y"].astype(np.int64)
    try:
        answer = remote.remote_model()(x=x)
        logits = remote.expect(answer, "y", (len(x), LENGTH, VOCAB))
    except remote.RemoteError as exc:
        fail("model", str(exc))
    right = logits.argmax(-1) == y
    report.result(
        token_acc=float(right.mean()),
        seq_acc=float(right.all(1).mean()),
        params=remote.count(answer),
    )


if __name__ == "__main__":
    main()

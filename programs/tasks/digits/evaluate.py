"""Trusted evaluator of the digits task: held-out accuracy of the exported classifier.

Split evaluation: the exported model (model.pt, TorchScript: code the variant wrote) runs in its
own container behind serve.py; this process holds the held-out data, sends only the images, and
scores the logits that come back. A model that fails, hangs, or returns the wrong shape or
non-finite values is an error, not a score.
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
    with np.load(Path(os.environ.get("SELFPROG_DATA", "data/heldout")) / "digits.npz") as d:
        x, y = d["x"].astype(np.float32), d["y"].astype(np.int64)
    try:
        answer = remote.remote_model()(x=x)
        logits = remote.expect(answer, "y", (len(x), 10))
    except remote.RemoteError as exc:
        fail("model", str(exc))
    pred = logits.argmax(1)
    per_class = [float((pred[y == c] == c).mean()) for c in range(10)]
    report.result(
        accuracy=float((pred == y).mean()),
        worst_class_accuracy=min(per_class),
        params=remote.count(answer),
    )


if __name__ == "__main__":
    main()

"""A tiny real program for Docker tests of the loop: no torch, seconds per variant.

TRAIN sleeps ``train_s`` then exports two numbers ``X`` and ``Y`` (declared search settings, so
the ``mutate`` generator moves them); EVAL sleeps ``eval_s`` and reports
``loss = (X - 1.5)² + (Y + 1)²`` plus a little seeded noise.
"""

from __future__ import annotations

from pathlib import Path

from orchestrator.program import Program

MANIFEST = """[program]
name = "quick"
editable = ["train.py"]
description = "Two numbers; the evaluator scores their distance to a hidden point."

[metric]
name = "loss"
goal = "minimize"
noise = {noise}

[resources]
cpus = 1.0
memory = "256m"
timeout_s = {timeout}
pids = 64
disk = "16m"
"""

TRAIN = """import json
import os
import time
from pathlib import Path

from sandbox import report

X = 0.0  # search: float[-3, 3]
Y = 0.0  # search: float[-3, 3]
SLEEP_S = {train_s}

time.sleep(SLEEP_S)
out = Path(os.environ.get("SELFPROG_OUT", "out"))
(out / "params.json").write_text(json.dumps({{"x": X, "y": Y}}))
report.artifact("params.json")
"""

EVALUATE = """import json
import os
import random
import time
from pathlib import Path

from sandbox import report

time.sleep({eval_s})
params = json.loads((Path(os.environ.get("SELFPROG_OUT", "out")) / "params.json").read_text())
x, y = float(params["x"]), float(params["y"])
noise = random.Random(int(os.environ.get("SELFPROG_SEED", "0"))).gauss(0, 0.001)
report.result(loss=(x - 1.5) ** 2 + (y + 1) ** 2 + noise)
"""


def write_quick_program(root: Path, *, train_s: float = 0.0, eval_s: float = 0.0,
                        noise: float = 0.001, nonce: str = "") -> Program:
    """Write the program; a ``nonce`` makes its images new (an image build really happens)."""
    root.mkdir(parents=True, exist_ok=True)
    timeout = max(30, int(3 * (train_s + eval_s)) + 30)
    (root / "program.toml").write_text(MANIFEST.format(noise=noise, timeout=timeout))
    (root / "train.py").write_text(TRAIN.format(train_s=train_s))
    (root / "evaluate.py").write_text(EVALUATE.format(eval_s=eval_s) + f"# {nonce}\n")
    return Program.load(root)


def remove_quick_images(client) -> None:
    """Remove the thin images the tests built for ``quick`` (each test's nonce makes new ones)."""
    for image in client.images.list(filters={"label": "selfprog.role=variant"}):
        if any(t.startswith("selfprog-variant:quick-") for t in image.tags):
            for tag in image.tags:
                client.images.remove(tag, noprune=False)

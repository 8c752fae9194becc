"""Slot utilisation of ``selfprog evolve`` with 2 slots on variants of 30 s or more.

Utilisation = seconds the slots spend inside ``Runner.run`` (thin build, TRAIN and EVAL
containers) over (slots × wall time of the run, from the loop's start to its end). The program
is the test suite's ``quick`` program with TRAIN sleeping 25 s and EVAL 5 s, so the figure
measures the orchestrator (generation ahead of evaluation, queueing, recording), not the CPU.

Run: ``.venv/bin/python benchmarks/slot_utilisation.py [VARIANTS]``; it writes its section of
``docs/benchmarks.md`` and prints it.
"""

from __future__ import annotations

import os
import platform
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs" / "benchmarks.md"
sys.path.insert(0, str(ROOT))

from benchmarks.docsection import write_section  # noqa: E402
from orchestrator.containers.backend import LocalBackend  # noqa: E402
from orchestrator.evolution.launch import run_evolution  # noqa: E402
from tests.evolution.quickprog import remove_quick_images, write_quick_program  # noqa: E402

EXPLAINED = """\
Target: at least 90% with 2 slots on variants of 30 s or more. Busy time is what the slots
spend inside `DockerRunner.run` (thin image build, TRAIN and EVAL containers, copying artifacts);
wall time runs from the loop's construction (sweep and seed included) to its end. The
orchestrator's share is the gaps between one job's end and the next one's start: the loop keeps
`slots.lookahead` proposals queued beyond the running ones, so a slot picks its next job
straight from the queue while the loop records the last result. The variants sleep rather than
compute, so the figure does not depend on the machine's load; with CPU-bound variants the slots
still run back to back, each slower."""


def main(variants: int = 7) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        program = write_quick_program(Path(tmp) / "quick", train_s=25, eval_s=5,
                                      nonce=f"bench {time.time()}")
        backend = LocalBackend.connect()
        try:
            t0 = time.monotonic()
            done = run_evolution(None, {"program": str(program.root), "runs_dir": f"{tmp}/runs",
                                        "budget.variants": variants, "slots.count": 2,
                                        "generator.backend": "mutate"}, backend=backend)
            wall = time.monotonic() - t0
            evals = done.summary["counts"]["evaluations"]
            remove_quick_images(backend.client)
        finally:
            backend.close()
    section = "\n".join([
        "## Slot utilisation (`benchmarks/slot_utilisation.py`)\n",
        f"Machine: {platform.platform()}, {len(os.sched_getaffinity(0))} cores. "
        f"Measured {time.strftime('%Y-%m-%d')}.\n",
        "| what | value |\n|---|---|",
        f"| slots | 2 |\n| evaluations (seed + {variants} variants) | {evals} |",
        "| per variant | TRAIN 25 s + EVAL 5 s of sleep, plus container start-up |",
        f"| wall time of the loop | {wall:.1f} s |",
        f"| **slot utilisation** | **{done.outcome.utilisation:.1%}** |\n",
        EXPLAINED,
    ])
    write_section(DOCS, section)
    print(section)


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 7)

"""Slot utilisation of ``selfprog evolve`` with 2 slots on variants of 30 s or more.

Utilisation = seconds the slots spend inside ``Runner.run`` (thin build, TRAIN and EVAL
containers) over (slots × wall time of the run, from the loop's start to its end). The program
is the test suite's ``quick`` program with TRAIN sleeping 25 s and EVAL 5 s, so the figure
measures the orchestrator (generation ahead of evaluation, queueing, recording), not the CPU.

Run: ``.venv/bin/python benchmarks/slot_utilisation.py [VARIANTS]``; it prints a markdown section.
"""

from __future__ import annotations

import platform
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

from evolution.quickprog import remove_quick_images, write_quick_program  # noqa: E402

from orchestrator.engine import connect  # noqa: E402
from orchestrator.evolve import run_evolution  # noqa: E402


def main(variants: int = 7) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        program = write_quick_program(Path(tmp) / "quick", train_s=25, eval_s=5,
                                      nonce=f"bench {time.time()}")
        t0 = time.monotonic()
        done = run_evolution(None, {"program": str(program.root), "runs_dir": f"{tmp}/runs",
                                    "budget.variants": variants, "slots.count": 2,
                                    "generator.backend": "mutate"},
                             on_start=lambda _e: None, log=lambda _m: None)
        wall = time.monotonic() - t0
        evals = done.summary["counts"]["evaluations"]
        remove_quick_images(connect())
    print("## Slot utilisation (`benchmarks/slot_utilisation.py`)\n")
    print(f"Machine: {platform.platform()}, {len(__import__('os').sched_getaffinity(0))} cores. "
          f"Measured {time.strftime('%Y-%m-%d')}.\n")
    print("| what | value |\n|---|---|")
    print(f"| slots | 2 |\n| evaluations (seed + {variants} variants) | {evals} |")
    print("| per variant | TRAIN 25 s + EVAL 5 s of sleep, plus container start-up |")
    print(f"| wall time of the loop | {wall:.1f} s |")
    print(f"| **slot utilisation** | **{done.outcome.utilisation:.1%}** |")


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 7)

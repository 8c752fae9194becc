"""Time of ``selfprog report`` on a synthetic run of 2,000 variants.

The run is written through the store's own API (no containers): a greedy-looking lineage whose
loss falls over three decades, about 10% crashes and 2% timeouts, a recheck for every fifth
improvement, and one rejected generation call in four. ``build_run`` is also what the report's
browser test renders.

Run: ``.venv/bin/python benchmarks/report_scale.py [VARIANTS [KEEP_DIR]]``; it writes its
section of ``docs/benchmarks.md`` and prints it (and keeps the run in KEEP_DIR when given: the
screenshot in ``docs/report.png`` is of that report).
"""

from __future__ import annotations

import hashlib
import math
import os
import platform
import random
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs" / "benchmarks.md"
sys.path.insert(0, str(ROOT))

from benchmarks.docsection import write_section  # noqa: E402
from orchestrator.generators.base import GenerationCall  # noqa: E402
from orchestrator.generators.edits.diffs import unified_diff  # noqa: E402
from orchestrator.result import Status, VariantResult  # noqa: E402
from orchestrator.runs.store import Store  # noqa: E402

MANIFEST = """[program]
name = "synthetic"
editable = ["train.py"]

[metric]
name = "mse"
goal = "minimize"

[resources]
cpus = 1.0
memory = "256m"
timeout_s = 60
"""
TRAIN = "LR = {lr}  # search: log[1e-5, 1]\nWIDTH = {width}  # search: int[1, 512]\n"


def build_run(folder: Path, variants: int, seed: int = 0) -> Path:
    """A finished run of ``variants`` variants (plus the seed) in ``folder/runs/synthetic``;
    returns the run folder. The program is written to ``folder/program``."""
    rng = random.Random(seed)
    program = folder / "program"
    program.mkdir(parents=True, exist_ok=True)
    (program / "program.toml").write_text(MANIFEST)
    (program / "train.py").write_text(TRAIN.format(lr=0.1, width=8))
    (program / "evaluate.py").write_text("# trusted\n")
    store = Store(folder / "runs" / "synthetic", create=True)
    store.init_run(program.resolve(), '{"keep": [], "generator": {}}')
    seed_files = {"train.py": TRAIN.format(lr=0.1, width=8)}
    rows: list[tuple[str, dict[str, str], float]] = []
    best: tuple[str, dict[str, str], float] | None = None
    for i in range(variants + 1):
        parent = None if i == 0 else (best if rng.random() < 0.7 else rng.choice(rows))
        lr, width = (0.1, 8) if parent is None else (
            round(10 ** rng.uniform(-5, 0), 6), rng.randint(1, 512))
        files = {"train.py": TRAIN.format(lr=lr, width=width)}
        vid = hashlib.sha256(f"{i} {lr} {width}".encode()).hexdigest()[:16]
        call = None if parent is None else GenerationCall(
            "openai", rng.choice(["gpt-x", "gpt-y"]), "prompt", "answer", tokens_in=900,
            tokens_out=rng.randint(50, 400), kind="edit")
        if call is not None and rng.random() < 0.25:
            store.add_call(call, parent[0], "rejected", rejection=rng.choice(
                ["no_edit: no block", "syntax: line 3", "duplicate"]))
        record = store.add_variant(
            vid=vid, full_hash=vid * 4, parent_id=parent[0] if parent else None, files=files,
            diff=unified_diff(parent[1], files) if parent else "",
            seed_diff=unified_diff(seed_files, files) if parent else "", call=call,
            seeds=[(0, "first")])
        floor = 0.5 * math.exp(-7 * i / max(1, variants))  # three decades over the run
        value = floor * rng.uniform(1.0, 3.0)
        status = Status.OK if i == 0 else rng.choices(
            [Status.OK, Status.CRASH, Status.TIMEOUT], [88, 10, 2])[0]
        metric = value if status is Status.OK else None
        (ev,) = record.evaluations
        store.finish_evaluation(ev, VariantResult(variant_id=vid, status=status,
                                                  metrics={"mse": metric} if metric else {}),
                                metric)
        better = metric is not None and (best is None or metric < best[2])
        recheck = better and i > 0 and rng.random() < 0.2
        verdict = "admitted" if better else "rejected"
        again = store.set_verdict(vid, "recheck" if recheck else verdict, metric,
                                  recheck_seed=1 if recheck else None,
                                  noise=0.05 if i == 0 else None)
        if again is not None and metric is not None:
            second = metric * rng.uniform(0.8, 1.2)
            store.finish_evaluation(again, VariantResult(variant_id=vid, status=Status.OK,
                                                         metrics={"mse": second}), second)
            metric = (metric + second) / 2
            better = best is None or metric < best[2]
            store.set_verdict(vid, "admitted" if better else "rejected", metric)
        if metric is not None:
            rows.append((vid, files, metric))
            if better:
                best = (vid, files, metric)
    store.set_run(state="finished", finished=time.time())
    store.close()
    return folder / "runs" / "synthetic"


def time_in_process(run: Path, repeats: int = 3) -> float:
    """Median seconds of ``write_report`` alone (store open, program loaded)."""
    from orchestrator.program import Program
    from orchestrator.runs.report import write_report

    store = Store(run)
    program = Program.load(store.run_info()["program"])
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        write_report(store, program)
        times.append(time.perf_counter() - t0)
    store.close()
    return statistics.median(times)


def time_report(run: Path, repeats: int = 3) -> tuple[float, int]:
    """Median seconds of ``selfprog report RUN`` (the whole command) and the page's size."""
    cli = [sys.executable, "-m", "orchestrator.cli", "report", str(run)]
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        subprocess.run(cli, check=True, capture_output=True, cwd=ROOT,
                       env={**os.environ, "PYTHONPATH": str(ROOT)})
        times.append(time.perf_counter() - t0)
    return statistics.median(times), (run / "report.html").stat().st_size


def main(variants: int = 2000, keep: Path | None = None) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        run = build_run(keep or Path(tmp), variants)
        built = time.perf_counter() - t0
        seconds, size = time_report(run)
        inside = time_in_process(run)
    load = os.getloadavg()[0]
    section = f"""## Report at {variants} variants (`benchmarks/report_scale.py`)

Target: `selfprog report` of a 2,000-variant run in a few seconds, one self-contained page.
Measured {time.strftime('%Y-%m-%d')} on {platform.node() or 'this machine'} ({platform.machine()},
{os.cpu_count()} cores, load {load:.1f} — a machine shared with other jobs):

| variants | `selfprog report` (median of 3, whole command) | `write_report` alone | report.html |
|---|---|---|---|
| {variants} | {seconds:.2f} s | {inside:.2f} s | {size / 2**20:.1f} MiB |

The run is synthetic, written through the store's API in {built:.0f} s (no containers): a
greedy-looking lineage whose loss falls over three decades (so the chart's y axis is logarithmic),
10% crashes, 2% timeouts, rechecks, one rejected call in four. The command's time includes
Python's start and imports; `write_report` alone is reading the store and writing the page."""
    write_section(DOCS, section)
    print(section)


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 2000,
         Path(sys.argv[2]) if len(sys.argv) > 2 else None)

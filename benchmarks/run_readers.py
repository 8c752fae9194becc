"""How fast the readers are on a large run: ``selfprog status`` and ``selfprog report`` at 2,000
variants, each timed as the subprocess a person or CI runs.

Builds the run with the store's own writes (a variant folder, a generation call with a 6 KB
prompt and a 1 KB answer, a finished evaluation with its result, a verdict, per variant), then
times each command ``--repeat`` times and prints the medians as JSON. ``--write-docs`` puts them
into docs/benchmarks.md.

    python benchmarks/run_readers.py --variants 2000 --repeat 5 --write-docs
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.docsection import write_section  # noqa: E402
from orchestrator.generators.base import GenerationCall  # noqa: E402
from orchestrator.program import Program  # noqa: E402
from orchestrator.result import StageResult, Status, VariantResult  # noqa: E402
from orchestrator.runs.snapshot import copy_program, program_hash  # noqa: E402
from orchestrator.runs.store import Store  # noqa: E402

MANIFEST = """[program]
name = "bench"
editable = ["train.py"]
[metric]
name = "loss"
goal = "minimize"
[resources]
cpus = 1
timeout_s = 10
"""


def build(folder: Path, program_dir: Path, n: int) -> None:
    program_dir.mkdir(parents=True)
    (program_dir / "program.toml").write_text(MANIFEST)
    (program_dir / "train.py").write_text("X = 0.0\n" + "# padding line\n" * 80)
    (program_dir / "evaluate.py").write_text("# trusted\n")
    program = Program.load(program_dir)
    store = Store(folder, create=True)
    store.init_run(copy_program(program, folder), "{}", program_hash(program_dir))
    rng = random.Random(0)
    seed_files = program.source_files()
    parent = None
    best = float("inf")
    for i in range(n):
        files = {"train.py": seed_files["train.py"].replace("X = 0.0", f"X = {i * 0.001:.3f}")}
        call = None if i == 0 else GenerationCall(
            "bench", "model", "p" * 6000, "r" * 1000, tokens_in=1500, tokens_out=250)
        diff = f"--- a/train.py\n+++ b/train.py\n@@ -1 +1 @@\n-X = 0.0\n+X = {i}\n"
        record = store.add_variant(vid=f"{i:016x}", full_hash=f"h{i}", parent_id=parent,
                                   files=files, diff=diff if i else "", seed_diff=diff if i else "",
                                   call=call, seeds=[(0, "first")])
        value = rng.uniform(0.1, 1.0) / (1 + i / 100)
        result = VariantResult(variant_id=record.variant.id, status=Status.OK,
                               metrics={"loss": value}, seed=0,
                               stages=[StageResult(stage="train", status=Status.OK, duration_s=2),
                                       StageResult(stage="eval", status=Status.OK, duration_s=1)])
        store.finish_evaluation(record.evaluations[0], result, value)
        admitted = value < best
        best = min(best, value)
        store.set_verdict(record.variant.id, "admitted" if admitted else "rejected", value)
        if admitted:
            parent = record.variant.id
    store.set_run(state="finished", finished=time.time())
    store.close()


def timed(args: list[str], repeat: int) -> float:
    return timed_cmd([sys.executable, "-m", "orchestrator.cli.app", *args], repeat)


CPU: dict[str, float] = {}
"""The median CPU seconds (user + system) of each command, beside its wall time: on a loaded
machine the wall time is mostly waiting for a core, the CPU time is what the command costs."""


def timed_cmd(cmd: list[str], repeat: int) -> float:
    times, cpu = [], []
    for _ in range(repeat):
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        t0 = time.perf_counter()
        subprocess.run(cmd, check=True, capture_output=True, cwd=ROOT)
        times.append(time.perf_counter() - t0)
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        cpu.append(after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime)
    CPU[" ".join(cmd[1:])] = round(statistics.median(cpu), 3)
    return statistics.median(times)


def in_process(run: Path) -> float:
    from orchestrator.runs.snapshot import read_program
    from orchestrator.runs.summary import summarize

    t0 = time.perf_counter()
    store = Store(run)
    summarize(store, read_program(store.program_root()))
    store.close()
    return time.perf_counter() - t0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--variants", type=int, default=2000)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--write-docs", action="store_true")
    opts = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        run = Path(tmp) / "runs" / "big"
        t0 = time.perf_counter()
        build(run, Path(tmp) / "program", opts.variants)
        built = time.perf_counter() - t0
        figures = {
            "variants": opts.variants, "build_s": round(built, 1),
            "python_start_s": round(timed_cmd([sys.executable, "-c", "pass"], opts.repeat), 3),
            "cli_import_s": round(timed_cmd([sys.executable, "-c", "import orchestrator.cli.app"],
                                            opts.repeat), 3),
            "status_in_process_s": round(in_process(run), 3),
            "status_s": round(timed(["status", str(run)], opts.repeat), 3),
            "status_list_s": round(timed(["--runs-dir", str(run.parent), "status"],
                                         opts.repeat), 3),
            "report_s": round(timed(["report", str(run)], opts.repeat), 3),
            "load": os.getloadavg()[0],
        }
        figures["cpu_s"] = {k.replace(str(run.parent), "RUNS"): v for k, v in CPU.items()}
    print(json.dumps(figures))
    if opts.write_docs:
        write_section(ROOT / "docs" / "benchmarks.md", section(figures))


def cpu(f: dict, key: str) -> str:
    return str(next((v for k, v in f["cpu_s"].items() if key in k), "?"))


def section(f: dict) -> str:
    return f"""## Reading a large run: `status` and `report` (`benchmarks/run_readers.py`)

Machine: the project's {os.cpu_count()}-core {platform.system()} VM, shared with other sessions'
tests (load average {f['load']:.1f} at the end). Measured {time.strftime('%Y-%m-%d')}.
A run of {f['variants']} variants built with the store's own writes (each with a 6 KB prompt, a
1 KB answer and one finished evaluation); each command run as a subprocess, median of 5,
Python's start-up and the CLI's imports included. The same reading in-process (the store opened,
the summary built): {f['status_in_process_s']} s.

| command | wall s | CPU s (user + system) |
| --- | --- | --- |
| `python -c pass` (the interpreter alone) | {f['python_start_s']} | {cpu(f, "-c pass")} |
| `python -c "import orchestrator.cli.app"` | {f['cli_import_s']} | {cpu(f, "-c import")} |
| `selfprog status RUN` | **{f['status_s']}** | **{cpu(f, "app status RUNS/")}** |
| `selfprog status` (the list, one run) | {f['status_list_s']} | {cpu(f, "RUNS status")} |
| `selfprog report RUN` | **{f['report_s']}** | **{cpu(f, "app report")}** |

When the load average is above the core count, the wall times are mostly waiting for a core;
the CPU time is what a command costs, and what its wall time comes to on an idle machine.

Target: `status` of a 2,000-variant run under 0.5 s: **{"met" if f['status_s'] < 0.5 else "not met"}
here ({f['status_s']} s)**. `status` reads counts, the seed and the best with SQL aggregates
(`Store.counts`, `Store.best_admitted`), never a table whole, and the program's name and metric
with `tomllib` (no manifest models): its own work is the in-process figure above. The rest is the
interpreter, the CLI's imports and Typer, which builds a pydantic `TypeAdapter` per parameter
when a command runs; the margin is small, and a loaded machine loses it.
"""


if __name__ == "__main__":
    main()

"""What the sandbox costs per variant, against bare processes and against the floor.

Per round, interleaved so load on a shared machine hits all three alike:

- bare: the program's TRAIN and EVAL scripts as two host processes (``python train.py``, then
  ``python evaluate.py``), with the same report API;
- sandbox: ``DockerRunner.run`` of a new variant (so a thin image is really built), both stages;
- floor: a thin image build plus two no-op ``docker run --rm`` of it: the least any container
  sandbox with a per-variant image pays;
- split: the same program with a model-side ``serve.py`` (split evaluation): a model server
  container beside EVAL, one request answered by a fresh, Landlock-restricted worker.

overhead = sandbox - bare; split cost = split - sandbox (target: at most 0.5 s). Medians go to
``docs/benchmarks.md`` with the machine they ran on.
Run: ``python benchmarks/overhead.py [--rounds 7]`` (``make benchmarks``).
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from benchmarks.docsection import write_section  # noqa: E402
from orchestrator.containers.docker_runner import DockerRunner  # noqa: E402
from orchestrator.containers.engine import connect  # noqa: E402
from orchestrator.containers.images import ensure_runtime  # noqa: E402
from orchestrator.containers.variant_image import REPOSITORY, ImageCache  # noqa: E402
from orchestrator.program import Program  # noqa: E402
from orchestrator.runner import RunRequest, Variant  # noqa: E402

TRAIN = """\
import os
from pathlib import Path
from sandbox import report
out = Path(os.environ["SELFPROG_OUT"])
total = sum(i * i for i in range(100_000))
report.progress(step=1, loss=1.0 / (1 + total % 7))
(out / "model.txt").write_text(str(total))
report.artifact("model.txt")
"""
EVALUATE = """\
import os
from pathlib import Path
from sandbox import report
value = int((Path(os.environ["SELFPROG_OUT"]) / "model.txt").read_text())
report.result(score=float(value % 1000))
"""
SERVE = """\
import os
from pathlib import Path
from sandbox import remote


def load():
    value = int((Path(os.environ["SELFPROG_OUT"]) / "model.txt").read_text())
    return lambda request: {"y": value % 1000}


remote.serve(load)
"""
EVALUATE_SPLIT = """\
from sandbox import remote, report
answer = remote.remote_model()(x=1)
report.result(score=float(answer["y"]))
"""
MANIFEST = """\
[program]
name = "bench"
[metric]
name = "score"
goal = "maximize"
[resources]
cpus = 1.0
memory = "512m"
timeout_s = 60
disk = "64m"
"""


def make_program(root: Path, split: bool = False) -> Program:
    root.mkdir(parents=True)
    (root / "train.py").write_text(TRAIN)
    (root / "evaluate.py").write_text(EVALUATE_SPLIT if split else EVALUATE)
    if split:
        (root / "serve.py").write_text(SERVE)
    (root / "program.toml").write_text(MANIFEST)
    return Program.load(root)


def bare(program: Program, work: Path) -> float:
    out = work / f"bare-{uuid.uuid4().hex[:8]}"
    out.mkdir()
    env = {**os.environ, "PYTHONPATH": str(ROOT), "SELFPROG_OUT": str(out)}
    start = time.perf_counter()
    for script in ("train.py", "evaluate.py"):
        subprocess.run([sys.executable, str(program.root / script)], env=env, check=True,
                       capture_output=True)
    return time.perf_counter() - start


def sandbox(runner: DockerRunner, program: Program, work: Path) -> float:
    tag = uuid.uuid4().hex[:8]
    variant = Variant(program, {"train.py": TRAIN + f"# round {tag}\n"})
    start = time.perf_counter()
    result = runner.run(RunRequest(variant=variant, run_id="bench", folder=work / tag))
    elapsed = time.perf_counter() - start
    if result.status != "ok":
        raise SystemExit(f"the benchmark variant did not run ok: {result.error}")
    return elapsed


def floor(cache: ImageCache, runtime: str, program: Program) -> float:
    start = time.perf_counter()
    image = cache.ensure(runtime, program, {"train.py": TRAIN + f"# floor {uuid.uuid4()}\n"})
    for _ in range(2):
        subprocess.run(["docker", "run", "--rm", "--network", "none", "--entrypoint", "/bin/true",
                        image], check=True, capture_output=True)
    return time.perf_counter() - start


def machine() -> str:
    mem = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    docker = subprocess.run(["docker", "version", "-f", "{{.Server.Version}}"],
                            capture_output=True, text=True, check=False).stdout.strip()
    return (f"{platform.platform()}, {os.cpu_count()} cores, {mem:.0f} GiB, Docker {docker}, "
            f"Python {platform.python_version()}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "benchmarks.md")
    args = parser.parse_args()
    client = connect()
    runtime = ensure_runtime(client, "cpu")
    runner = DockerRunner(client, runtime={"cpu": runtime})
    cache = ImageCache(client)
    times: dict[str, list[float]] = {"bare": [], "sandbox": [], "floor": [], "split": []}
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        program = make_program(work / "program")
        split = make_program(work / "split", split=True)
        sandbox(runner, program, work)  # warm-up: the seed's EVAL image, caches
        sandbox(runner, split, work)
        for i in range(args.rounds):
            times["bare"].append(bare(program, work))
            times["sandbox"].append(sandbox(runner, program, work))
            times["floor"].append(floor(cache, runtime, program))
            times["split"].append(sandbox(runner, split, work))
            print(f"round {i + 1}: " + ", ".join(f"{k} {v[-1]:.3f} s" for k, v in times.items()))
    _remove_bench_images(client)
    med = {k: statistics.median(v) for k, v in times.items()}
    overhead = med["sandbox"] - med["bare"]
    med["split_paired"] = statistics.median(
        split - plain for split, plain in zip(times["split"], times["sandbox"], strict=True))
    report = render(med, overhead, args.rounds, machine())
    write_section(args.out, report)
    print(report)
    verdict = (overhead <= 1.0 and overhead <= 1.5 * med["floor"]
               and med["split_paired"] <= 0.5)
    raise SystemExit(0 if verdict else 1)


def render(med: dict[str, float], overhead: float, rounds: int, where: str) -> str:
    ratio = overhead / med["floor"]
    split = med["split_paired"]
    return f"""## Sandbox overhead per variant (`benchmarks/overhead.py`)

Machine: {where}.
Measured {time.strftime("%Y-%m-%d")}, medians of {rounds} interleaved rounds.

| what | median |
|---|---|
| bare: `train.py` then `evaluate.py` as host processes | {med["bare"]:.3f} s |
| sandbox: thin build + TRAIN + EVAL containers (`DockerRunner.run`) | {med["sandbox"]:.3f} s |
| **overhead** (sandbox - bare) | **{overhead:.3f} s** |
| floor: thin build + two no-op `docker run --rm` | {med["floor"]:.3f} s |
| overhead / floor | {ratio:.2f}x |
| split: the same with a model server beside EVAL (`serve.py`, one request) | \
{med["split"]:.3f} s |
| split - sandbox, medians | {med["split"] - med["sandbox"]:.3f} s \
({med["split"] / med["sandbox"]:.2f}x) |
| **split evaluation's cost** (median of each round's split - sandbox) | **{split:.3f} s** |

Targets: overhead at most 1.0 s ({"met" if overhead <= 1.0 else "NOT met"}) and at most 1.5x the
floor measured in the same run ({"met" if ratio <= 1.5 else "NOT met"}). The machine may be
shared with other work: compare only figures measured in the same run. Split evaluation: at most
0.5 s per variant ({"met" if split <= 0.5 else "NOT met"}).

What split evaluation adds: the socket volume, the model server's container (created, then
started in a thread while EVAL's container is created and started), the evaluator's wait for the
server to listen, one forked worker per request, and the removal of the server and the volume (at
the same time as EVAL's container's). What the sandbox adds over the floor: the `/out` volume,
copying `/out` out of the live TRAIN container, the harness's own Python start in each stage,
reading the protocol stream and the host-side cgroup watchdog; TRAIN's container is removed
while EVAL runs.
"""


def _remove_bench_images(client) -> None:
    for image in client.images.list(name=REPOSITORY, filters={"label": "selfprog.role=variant"}):
        if any(t.startswith(f"{REPOSITORY}:bench-") for t in image.tags):
            client.images.remove(image.id, force=True)


if __name__ == "__main__":
    main()

"""The Ray backend on one machine: scaling from one node to two, slot use, and Ray's overhead.

A real local cluster (``ray.cluster_utils.Cluster``: a head with no slots, nodes of one slot
each, separate processes) and the real Docker engine, which every node shares here:

- scaling: the same batch of sleep-bound variants (the test suite's ``quick`` program, TRAIN
  sleeping ``--train-s``) through ``RayRunner`` with one node, then with two; throughput ratio
  (target: at least 1.8);
- slot use: ``selfprog evolve`` with 2 slots on the two nodes, variants of 30 s (TRAIN 25 s,
  EVAL 5 s), as ``benchmarks/slot_utilisation.py`` measures the local runner (target: 90%);
- overhead: one variant whose image exists, run by the local ``DockerRunner`` and through
  ``RayRunner`` in turn; the median difference is what Ray adds (target: at most 0.2 s).

Run: ``.venv/bin/python benchmarks/ray_scaling.py [--rounds 7] [--batch 6]``; it writes its
section of ``docs/benchmarks.md`` and prints it.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs" / "benchmarks.md"
sys.path.insert(0, str(ROOT))
os.environ["PYTHONPATH"] = os.pathsep.join([str(ROOT), *filter(None, [os.environ.get(
    "PYTHONPATH")])])  # the nodes' workers import this checkout

from benchmarks.docsection import write_section  # noqa: E402
from orchestrator.cluster.backend import RayBackend, RayRunner  # noqa: E402
from orchestrator.containers.backend import LocalBackend  # noqa: E402
from orchestrator.evolution.launch import run_evolution  # noqa: E402
from orchestrator.program import Program  # noqa: E402
from orchestrator.runner import RunRequest, Variant  # noqa: E402
from tests.evolution.quickprog import remove_quick_images, write_quick_program  # noqa: E402

EXPLAINED = """\
Targets: two nodes give at least 1.8× the throughput of one; at least 90% slot use on 30 s
variants; Ray adds at most 0.2 s per variant. Every node here is a separate set of Ray
processes on the same machine and all share its one Docker engine, so the scaling figure
measures the control plane (placement, requests, folder transfer, the head's checks), not extra
hardware: the variants sleep, so two nodes can overlap them on two cores. The overhead is
measured two ways on one variant whose image exists: paired runs, local `DockerRunner` against
`RayRunner` (on a loaded 2-core machine the pairs differ by more than Ray's share, either way), and
directly, as each Ray run's wall time on the head less the time the node agent spent in its own
`DockerRunner.run`: the plain-data request, the tar of the variant's folder back, and the head's
artifact-style checks before it writes the folder."""


def batch(program: Program, n: int, start: int = 0) -> list[Variant]:
    """``n`` new variants (so each builds its own thin image, as in a run)."""
    source = program.source_files()
    return [Variant(program, {**source, "train.py": source["train.py"].replace(
        "X = 0.0", f"X = {i / 100:.2f}")}) for i in range(start, start + n)]


def through(runner: RayRunner, slots: int, variants: list[Variant], folder: Path) -> float:
    """Run the batch with ``slots`` threads (as the slot pool does); return variants per hour."""
    todo = list(enumerate(variants))
    lock = threading.Lock()

    def work() -> None:
        while True:
            with lock:
                if not todo:
                    return
                i, variant = todo.pop(0)
            result = runner.run(RunRequest(variant=variant, run_id=f"scale-{slots}",
                                           folder=folder / f"{slots}-{i}"))
            assert result.status.value == "ok", result.error

    t0 = time.monotonic()
    threads = [threading.Thread(target=work) for _ in range(slots)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return len(variants) / (time.monotonic() - t0) * 3600


def overhead(ray_runner: RayRunner, local: LocalBackend, program: Program, rounds: int,
             folder: Path) -> tuple[float, float, float, float]:
    """Medians of paired runs of the seed variant: local, through Ray, their difference, and
    Ray's own share of each Ray run (its wall time less the node runner's)."""
    variant = Variant(program, program.source_files())
    runner = local.runner(gpu=False)
    runner.run(RunRequest(variant=variant, run_id="warm", folder=folder / "warm"))  # image built
    ray_runner.run(RunRequest(variant=variant, run_id="warm", folder=folder / "warm-ray"))
    pairs = []
    for i in range(rounds):
        t0 = time.monotonic()
        runner.run(RunRequest(variant=variant, run_id=f"ovh-{i}", folder=folder / f"l{i}"))
        t1 = time.monotonic()
        ray_runner.run(RunRequest(variant=variant, run_id=f"ovh-{i}", folder=folder / f"r{i}"))
        pairs.append((t1 - t0, time.monotonic() - t1))
    local_s = statistics.median(p[0] for p in pairs)
    ray_s = statistics.median(p[1] for p in pairs)
    added = [p.seconds - p.node_seconds for p in ray_runner.history[-rounds:]
             if p.node_seconds is not None]
    return (local_s, ray_s, statistics.median(p[1] - p[0] for p in pairs),
            statistics.median(added))


def main(rounds: int, size: int, train_s: float) -> None:
    import ray
    from ray.cluster_utils import Cluster

    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 0,
                                                            "include_dashboard": False})
    cluster.add_node(num_cpus=1, resources={"selfprog_slot": 1})
    cluster.wait_for_nodes()
    ray.init(address=cluster.address, log_to_driver=False)
    local = LocalBackend.connect()
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        try:
            fast = write_quick_program(work / "fast", nonce=f"ovh {time.time()}")
            sleepy = write_quick_program(work / "sleepy", train_s=train_s, eval_s=1,
                                         nonce=f"scale {time.time()}")
            one = RayBackend.connect()
            ovh = overhead(one.runner(False), local, fast, rounds, work / "ovh")
            single = through(one.runner(False), 1, batch(sleepy, size), work / "scale")
            one.close()
            cluster.add_node(num_cpus=1, resources={"selfprog_slot": 1})
            cluster.wait_for_nodes()
            two = RayBackend.connect()
            double = through(two.runner(False), 2, batch(sleepy, size, size), work / "scale")
            long = write_quick_program(work / "long", train_s=25, eval_s=5,
                                       nonce=f"use {time.time()}")
            t0 = time.monotonic()
            done = run_evolution(None, {"program": str(long.root), "runs_dir": f"{tmp}/runs",
                                        "budget.variants": 5, "generator.backend": "mutate"},
                                 backend=two)
            wall = time.monotonic() - t0
            evals = done.summary["counts"]["evaluations"]
            two.close()
        finally:
            remove_quick_images(local.client)
            local.close()
            ray.shutdown()
            cluster.shutdown()
    section = "\n".join([
        "## Ray cluster backend on one machine (`benchmarks/ray_scaling.py`)\n",
        f"Machine: {platform.platform()}, {len(os.sched_getaffinity(0))} cores, Ray "
        f"{ray.__version__}; nodes are local processes sharing one Docker engine. "
        f"Measured {time.strftime('%Y-%m-%d')}.\n",
        "| what | value |\n|---|---|",
        f"| batch | {size} variants, TRAIN {train_s:g} s + EVAL 1 s of sleep each |",
        f"| throughput, 1 node (1 slot) | {single:.0f} variants/h |",
        f"| throughput, 2 nodes (1 slot each) | {double:.0f} variants/h |",
        f"| **scaling, 2 nodes over 1** | **{double / single:.2f}×** |",
        f"| slot use, 2 slots on two nodes, {evals} evaluations of 30 s | "
        f"**{done.outcome.utilisation:.1%}** (loop wall {wall:.0f} s) |",
        f"| one variant, local `DockerRunner` (median of {rounds}) | {ovh[0]:.2f} s |",
        f"| the same through `RayRunner` | {ovh[1]:.2f} s |",
        f"| through Ray less local (median of paired differences; load noise) "
        f"| {ovh[2]:+.2f} s |",
        f"| **Ray's overhead per variant**: head wall time less the node runner's own (median) "
        f"| **{ovh[3]:.3f} s** |\n",
        EXPLAINED,
    ])
    write_section(DOCS, section)
    print(section)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=7, help="paired overhead runs")
    parser.add_argument("--batch", type=int, default=6, help="variants per scaling batch")
    parser.add_argument("--train-s", type=float, default=8.0, help="TRAIN sleep per variant")
    args = parser.parse_args()
    main(args.rounds, args.batch, args.train_s)

"""How often the ``self`` backend's proposals are valid and run, and what a setting hole costs.

With a codelm export (``model.pt`` + ``model.json``, e.g. the seed program trained for its normal
budget), on ``programs/codelm``, starting from the seed:

- ``--holes`` setting-hole proposals and ``--completions`` code-completion proposals are made in
  batches of ``--batch`` (one ``propose`` call each: one sampling container and one scoring
  container when sandboxed), the seen set carried over so none repeats; validity is the share
  that passes every check before a build (parse, undefined names, limits, not seen before);
- seconds per setting-hole proposal = a batch's wall time / its size;
- ``--run-ok K``: the first K valid proposals of each kind are run through ``DockerRunner``
  (TRAIN + EVAL in the hardened sandbox), ``--jobs`` at a time, with the program's time budget
  set to ``--budget-s`` (shorter than the program's 60 s to fit a shared 2-core machine), and
  the share that ends ``ok`` is counted, of the runs and of all proposals made (``--log``
  keeps one JSON line per run as it ends).

Run: ``python benchmarks/selfgen.py --export runs/.../artifacts [--sandboxed]``; prints JSON.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from orchestrator.evolution.feedback import run_facts  # noqa: E402
from orchestrator.generators.base import GenerationRequest, Parent  # noqa: E402
from orchestrator.generators.config import CodeLMConfig, GeneratorConfig  # noqa: E402
from orchestrator.generators.selfgen import SelfGenerator  # noqa: E402
from orchestrator.program import Program, variant_hash  # noqa: E402


def completer(export: Path, sandboxed: bool):
    if sandboxed:
        from orchestrator.containers.sampler import SandboxedCompleter

        return SandboxedCompleter(export, timeout_s=600)
    from orchestrator.generators.inprocess import InProcessCompleter

    return InProcessCompleter.load(export, device="cpu")


def propose(gen: SelfGenerator, program: Program, total: int, batch: int, seed: int):
    parent = Parent("", program.source_files())
    facts = run_facts(program, None, gpus=0)  # as an evolve run on CPU slots tells it
    seen: set[str] = set()
    out, per = [], []
    s = seed
    while len(out) < total:
        n = min(batch, total - len(out))
        started = time.monotonic()
        got = gen.propose(GenerationRequest(program, (parent,), n=n, seed=s,
                                            seen=frozenset(seen), facts=facts))
        per.append((time.monotonic() - started) / n)
        for p in got:
            if p.valid and p.files is not None:
                seen.add(variant_hash(p.files))
        out += got
        s += 1
    return out, per


def run_ok(proposals: list, k: int, budget_s: float, work: Path,
           jobs: int = 1, log: Path | None = None, eval_bytes: int | None = None) -> list[dict]:
    """Run the first ``k`` valid proposals through ``DockerRunner``, ``jobs`` at a time; one
    record per run (status, val_bpb, stage seconds, the edit), appended to ``log`` as it ends.
    ``eval_bytes``: score on that much held-out text (None: the shipped evaluation)."""
    from concurrent.futures import ThreadPoolExecutor

    from benchmarks.compare_generators import quick_copy
    from orchestrator.containers.docker_runner import DockerRunner
    from orchestrator.containers.engine import connect
    from orchestrator.containers.images import ensure_runtime
    from orchestrator.runner import RunRequest, Variant

    quick = quick_copy(work, budget_s, eval_bytes)
    client = connect(timeout=60)
    runner = DockerRunner(client, runtime={"cpu": ensure_runtime(client, "cpu")})

    def one(i: int, p) -> dict:
        started = time.monotonic()
        result = runner.run(RunRequest(variant=Variant(quick, p.files), run_id="bench-selfgen",
                                       folder=work / f"v{i}"))
        record = {"run": i, "status": str(getattr(result.status, "value", result.status)),
                  "val_bpb": result.metrics.get("val_bpb"),
                  "stages": {s.stage: [str(getattr(s.status, "value", s.status)),
                                       round(s.duration_s, 1)] for s in result.stages},
                  "wall_s": round(time.monotonic() - started, 1),
                  "note": p.notes[0] if p.notes else "", "error": result.error}
        print(json.dumps(record, default=str), flush=True)
        if log is not None:
            with log.open("a") as f:
                f.write(json.dumps(record, default=str) + "\n")
        return record

    chosen = [p for p in proposals if p.valid][:k]
    with ThreadPoolExecutor(max_workers=max(1, jobs)) as pool:
        return list(pool.map(one, range(len(chosen)), chosen))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--export", type=Path, required=True)
    ap.add_argument("--sandboxed", action="store_true")
    ap.add_argument("--holes", type=int, default=50)
    ap.add_argument("--completions", type=int, default=50)
    ap.add_argument("--batch", type=int, default=10)
    ap.add_argument("--candidates", type=int, default=4)
    ap.add_argument("--max-new-bytes", type=int, default=1200)
    ap.add_argument("--temperature", type=float, default=0.8)
    ap.add_argument("--run-ok", type=int, default=0)
    ap.add_argument("--budget-s", type=float, default=15)
    ap.add_argument("--jobs", type=int, default=1, help="runs at once (--run-ok)")
    ap.add_argument("--eval-bytes", type=int, help="--run-ok: score on this many held-out bytes "
                    "and 8 completed lines (default: the shipped evaluation)")
    ap.add_argument("--log", type=Path, help="append one JSON line per run here (--run-ok)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--completion", choices=("expression", "block"), default="expression")
    args = ap.parse_args()
    program = Program.load(ROOT / "programs" / "codelm")
    lm = completer(args.export, args.sandboxed)
    report: dict[str, object] = {"machine": f"{platform.machine()}, {platform.node()}",
                                 "export": str(args.export), "sandboxed": args.sandboxed,
                                 "args": vars(args) | {"export": str(args.export)}}
    for kind, total, fraction in (("hole", args.holes, 1.0),
                                  ("completion", args.completions, 0.0)):
        if total <= 0:
            continue
        config = GeneratorConfig(backend="self", temperature=args.temperature,
                                 codelm=CodeLMConfig(hole_fraction=fraction,
                                                     candidates=args.candidates,
                                                     max_new_bytes=args.max_new_bytes,
                                                     completion=args.completion))
        gen = SelfGenerator(config, lm, load=lambda f: completer(f, args.sandboxed))
        props, per = propose(gen, program, total, args.batch, args.seed)
        reasons: dict[str, int] = {}
        for p in props:
            if not p.valid:
                key = (p.rejection or "").split(":")[0]
                reasons[key] = reasons.get(key, 0) + 1
        entry: dict[str, object] = {
            "proposals": len(props), "valid": sum(p.valid for p in props),
            "kinds": sorted({p.call.kind for p in props if p.call}),
            "rejections": reasons, "s_per_proposal_median": statistics.median(per),
            "s_per_proposal_batches": [round(x, 3) for x in per],
            "examples": [p.notes[0] for p in props if p.valid][:5]}
        if args.run_ok:
            with tempfile.TemporaryDirectory() as tmp:
                runs = run_ok(props, args.run_ok, args.budget_s, Path(tmp),
                              args.jobs, args.log, args.eval_bytes)
            statuses = [r["status"] for r in runs]
            entry["run"] = {"budget_s": args.budget_s, "eval_bytes": args.eval_bytes,
                            "jobs": args.jobs, "statuses": statuses,
                            "ok": statuses.count("ok"), "runs": len(runs),
                            "ok_of_proposals": f"{statuses.count('ok')} / {len(props)}",
                            "val_bpb": [r["val_bpb"] for r in runs]}
        report[kind] = entry
        print(json.dumps({kind: entry}), flush=True)
    print(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()

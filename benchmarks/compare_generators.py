"""Generators side by side on codelm: the same evaluations, the same budget, several run seeds.

For each run seed the seed program is evaluated once, then each generator proposes ``--k``
children of it (one ``propose`` call: one generation, no selection in between) and every child
is evaluated with that run seed, through ``DockerRunner`` (TRAIN + EVAL in the hardened
sandbox). Per generator and run seed: proposals made, valid (passed every check before a build),
``ok`` (trained and evaluated), and the best gain ``(seed val_bpb - best child val_bpb)``, in
units of the noise floor. The noise floor reported beside it is the spread of the seed's own
``val_bpb`` over the run seeds (the declared 0.07 is for the full budget and evaluation).

Generators: ``mutate``; ``self-holes`` and ``self-expr`` (the program's own export writing
setting holes / expression holes, in-process: a model trained here is trusted); ``openai``:
the LM path against the scripted OpenAI-compatible server of the tests, which replays a fixed
list of answers (three plausible edits a person might write, one of them broken) -- it
measures the pipeline around an LM, not an LM.

To fit a shared 2-core machine the program is a copy of codelm with ``--budget-s`` of training
and an evaluation on ``--eval-bytes`` of held-out text and 8 completed lines (all far below the
shipped 60 s, 96 KiB and 64 lines): the figures compare generators with each other, not with
the docs' full runs.

Run: ``python benchmarks/compare_generators.py --export FOLDER [--seeds 3 --k 3]``; prints JSON
lines, then a Markdown table.
"""

from __future__ import annotations

import argparse
import json
import platform
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from orchestrator.evolution.feedback import run_facts  # noqa: E402
from orchestrator.generators.base import GenerationRequest, Parent  # noqa: E402
from orchestrator.generators.config import (  # noqa: E402
    CodeLMConfig,
    GeneratorConfig,
    OpenAIConfig,
)
from orchestrator.program import Program  # noqa: E402

EDIT = "train.py\n<<<<<<< SEARCH\n{old}\n=======\n{new}\n>>>>>>> REPLACE\n"
SCRIPT = [  # (old line, new line) of each scripted answer; the last one does not apply
    ("LEARNING_RATE = 3e-4  # search: log[1e-4, 3e-2]",
     "LEARNING_RATE = 1e-3  # search: log[1e-4, 3e-2]"),
    ('LR_SCHEDULE = "constant"  # search: choice[constant, cosine, linear]',
     'LR_SCHEDULE = "cosine"  # search: choice[constant, cosine, linear]'),
    ("N_LAYER = 3  # search: int[1, 6]", "N_LAYER = 4  # search: int[1, 6]"),
]


def quick_copy(work: Path, budget_s: float, eval_bytes: int | None) -> Program:
    """A copy of codelm under ``work`` that trains ``budget_s`` and, with ``eval_bytes``, is
    scored on that much held-out text and 8 completed lines (None: the shipped evaluation)."""
    root = work / "codelm"
    shutil.copytree(ROOT / "programs" / "codelm", root)
    toml = (root / "program.toml").read_text()
    (root / "program.toml").write_text(toml.replace("time_budget_s = 60",
                                                    f"time_budget_s = {budget_s:g}"))
    if eval_bytes is not None:
        evaluate = (root / "evaluate.py").read_text()
        evaluate = evaluate.replace("EVAL_BYTES = 98_304", f"EVAL_BYTES = {eval_bytes}")
        (root / "evaluate.py").write_text(evaluate.replace("N_LINES = 64", "N_LINES = 8"))
    for path in [work, root, *root.rglob("*")]:
        path.chmod(0o755 if path.is_dir() else 0o644)
    return Program.load(root)


def generators(export: Path, server_v1: str) -> dict[str, object]:
    from orchestrator.generators.auto import make_generator
    from orchestrator.generators.inprocess import InProcessCompleter
    from orchestrator.generators.selfgen import SelfGenerator

    lm = InProcessCompleter.load(export, device="cpu")
    out: dict[str, object] = {"mutate": make_generator(GeneratorConfig(backend="mutate"))}
    for name, fraction in (("self-holes", 1.0), ("self-expr", 0.0)):
        config = GeneratorConfig(backend="self", codelm=CodeLMConfig(hole_fraction=fraction))
        out[name] = SelfGenerator(config, lm, load=lambda f: lm)
    out["openai"] = make_generator(GeneratorConfig(backend="openai", openai=OpenAIConfig(
        base_url=server_v1, model="scripted-coder", retries=0, context_tokens=32768)))
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--export", type=Path, required=True)
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--k", type=int, default=3, help="children per generator and run seed")
    ap.add_argument("--budget-s", type=float, default=5)
    ap.add_argument("--eval-bytes", type=int, default=16_384)
    args = ap.parse_args()

    from orchestrator.containers.docker_runner import DockerRunner
    from orchestrator.containers.engine import connect
    from orchestrator.containers.images import ensure_runtime
    from orchestrator.runner import RunRequest, Variant
    from tests.generators.scripted_server import Answer, Script, ScriptedServer

    client = connect(timeout=60)
    runner = DockerRunner(client, runtime={"cpu": ensure_runtime(client, "cpu")})
    answers = [Answer(text=EDIT.format(old=o, new=n)) for o, n in SCRIPT]
    rows: dict[str, list[dict]] = {}
    seeds: list[float] = []
    started = time.monotonic()
    with tempfile.TemporaryDirectory() as tmp, ScriptedServer(Script(answers)) as server:
        program = quick_copy(Path(tmp), args.budget_s, args.eval_bytes)
        gens = generators(args.export, server.v1)
        parent = Parent("", program.source_files())
        facts = run_facts(program, None, gpus=0)  # CPU slots: the GPU-only settings stay

        def evaluate(files: dict[str, str], seed: int, name: str) -> tuple[str, float | None]:
            folder = Path(tmp) / f"{name}-{time.monotonic_ns()}"
            result = runner.run(RunRequest(variant=Variant(program, files), run_id="bench-cmp",
                                           folder=folder, seed=seed))
            status = str(getattr(result.status, "value", result.status))
            value = result.metrics.get("val_bpb") if status == "ok" else None
            print(json.dumps({"seed": seed, "who": name, "status": status, "val_bpb": value}),
                  flush=True)
            return status, value

        for seed in range(args.seeds):
            _status, base = evaluate(parent.files, seed, "seed")
            if base is None:
                raise SystemExit(f"the seed program did not evaluate ok with seed {seed}")
            seeds.append(base)
            for name, gen in gens.items():
                if name == "openai":  # the script replays from its first answer each seed
                    server.script.requests.clear()
                props = gen.propose(GenerationRequest(  # type: ignore[attr-defined]
                    program, (parent,), n=args.k, seed=seed, facts=facts))
                values = [evaluate(p.files, seed, name) for p in props if p.valid]
                best = min((v for _s, v in values if v is not None), default=None)
                rows.setdefault(name, []).append({
                    "seed": seed, "made": len(props), "valid": sum(p.valid for p in props),
                    "ok": sum(s == "ok" for s, _v in values), "base": base, "best": best,
                    "rejections": [p.rejection for p in props if not p.valid]})
                print(json.dumps({"generator": name, **rows[name][-1]}), flush=True)
    floor = statistics.stdev(seeds) if len(seeds) > 1 else float("nan")
    print(json.dumps({"machine": platform.node(), "wall_s": round(time.monotonic() - started),
                      "seed_val_bpb": seeds, "noise_floor": floor, "args": {
                          k: str(v) for k, v in vars(args).items()}}))
    print("| generator | made | valid | ok | best gain / measured floor, per seed "
          "| best gain / 0.07 |")
    print("| --- | --- | --- | --- | --- | --- |")
    for name, entries in rows.items():
        gains = [f"{(e['base'] - e['best']) / floor:+.1f}" if e["best"] is not None else "-"
                 for e in entries]
        declared = [f"{(e['base'] - e['best']) / 0.07:+.1f}" if e["best"] is not None else "-"
                    for e in entries]
        print(f"| {name} | {sum(e['made'] for e in entries)} | "
              f"{sum(e['valid'] for e in entries)} | {sum(e['ok'] for e in entries)} | "
              f"{', '.join(gains)} | {', '.join(declared)} |")


if __name__ == "__main__":
    main()

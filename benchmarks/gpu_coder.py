"""coder on a GPU, bare (no Docker): fine-tune throughput, then one self-proposal round on CUDA.

    python benchmarks/gpu_coder.py                       # the tiny random base, built here
    python benchmarks/gpu_coder.py --base /models/qwen   # a data-only base folder (coder_base.py)
    python benchmarks/gpu_coder.py --budget 120 --proposals 8

1. Runs ``programs/coder/train.py`` as a subprocess with the base in a scratch data folder and
   ``SELFPROG_TIME_BUDGET_S``; reads its export's model.json (tokens/s, steps, CUDA peak).
2. Loads the export in this process as the ``self`` generator (``HFInProcessCompleter``: the
   same sampler the container runs, on CUDA) and proposes ``--proposals`` edits of the coder's
   own train.py (setting holes and code completions); reports valid ones and seconds each.

Prints one JSON object; the figures go into docs/benchmarks.md with the machine named. Needs
torch with CUDA (it says so and exits 2 without); nothing here needs Docker.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--base", type=Path, help="a data-only base folder; default: tiny")
    parser.add_argument("--budget", type=float, default=60.0, help="fine-tune seconds")
    parser.add_argument("--proposals", type=int, default=4)
    parser.add_argument("--cpu", action="store_true", help="run on the CPU (a dry run)")
    args = parser.parse_args(argv)

    import torch

    if not torch.cuda.is_available() and not args.cpu:
        print("no CUDA device: this benchmark is for a GPU machine (--cpu for a dry run)")
        return 2
    from orchestrator.generators.base import GenerationRequest, Parent
    from orchestrator.generators.config import CodeLMConfig, GeneratorConfig
    from orchestrator.generators.hfcompleter import HFInProcessCompleter
    from orchestrator.generators.selfgen import SelfGenerator
    from orchestrator.program import Program
    from tools import coder_base

    scratch = Path(tempfile.mkdtemp(prefix="gpu-coder-"))
    try:
        data = scratch / "data"
        data.mkdir()
        shutil.copy(ROOT / "programs/coder/data/train/corpus.txt.xz", data)
        if args.base:
            shutil.copytree(args.base, data / "base")
        else:
            coder_base.tiny(data / "base")
        env = {**os.environ, "SELFPROG_DATA": str(data), "SELFPROG_OUT": str(scratch / "out"),
               "SELFPROG_TIME_BUDGET_S": f"{args.budget:g}", "PYTHONPATH": str(ROOT)}
        if args.cpu:
            env["CUDA_VISIBLE_DEVICES"] = ""
        started = time.monotonic()
        subprocess.run([sys.executable, str(ROOT / "programs/coder/train.py")], env=env,
                       check=True, stdout=subprocess.DEVNULL)
        train_wall = time.monotonic() - started
        meta = json.loads((scratch / "out" / "model.json").read_text())

        device = "cpu" if args.cpu else "cuda"
        lm = HFInProcessCompleter.load(scratch / "out", device)
        config = GeneratorConfig(backend="self", codelm=CodeLMConfig(model=str(scratch / "out"),
                                                                     sandboxed=False))
        generator = SelfGenerator(config, lm, lambda f: HFInProcessCompleter.load(f, device))
        program = Program.load(ROOT / "programs/coder")
        parent = Parent("seed", program.source_files())
        started = time.monotonic()
        proposals = generator.propose(GenerationRequest(program, (parent,), n=args.proposals,
                                                        seed=0))
        propose_s = time.monotonic() - started
        print(json.dumps({
            "device": torch.cuda.get_device_name(0) if device == "cuda" else "cpu",
            "torch": torch.__version__, "base": str(args.base or "tiny"),
            "params": meta["params"], "trained_params": meta["trained_params"],
            "budget_s": args.budget, "train_wall_s": round(train_wall, 1),
            "steps": meta["steps"], "train_tokens_per_s": round(meta["train_tokens_per_s"]),
            "cuda_peak_mb": round(meta["cuda_peak_bytes"] / 2**20),
            "proposals": len(proposals), "valid": sum(p.valid for p in proposals),
            "rejections": [p.rejection for p in proposals if not p.valid],
            "propose_s_each": round(propose_s / max(1, len(proposals)), 2),
        }, indent=1))
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

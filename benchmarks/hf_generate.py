"""Throughput of the ``hf`` generator: proposals for programs/codelm, tokens per second.

Runs without Docker (the GPU check runs it bare on a CUDA machine). With no ``--model`` it builds
a random-weight GPT-2 locally (no model hub needed): ``--size tiny`` (2 layers, 32 wide) or
``small`` (12 layers, 768 wide: GPT-2 small's shape). Prints one JSON object.

    python benchmarks/hf_generate.py --size small --n 16 --max-new-tokens 256
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from orchestrator.generators.base import GenerationRequest, Parent  # noqa: E402
from orchestrator.generators.config import GeneratorConfig, HFConfig  # noqa: E402
from orchestrator.program import Program  # noqa: E402

SIZES = {"tiny": {"n_embd": 32, "n_layer": 2, "n_head": 2},
         "small": {"n_embd": 768, "n_layer": 12, "n_head": 12}}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", help="hub id or folder of a causal LM (default: build one)")
    parser.add_argument("--size", choices=sorted(SIZES), default="tiny")
    parser.add_argument("--n", type=int, default=8, help="proposals to draw")
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--max-new-tokens", type=int, default=128)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--fast-decode", choices=["auto", "on", "off"], default="auto",
                        help="hf.fast_decode: static KV cache + compiled step (auto: on CUDA)")
    args = parser.parse_args()

    import torch

    from orchestrator.generators.hf import HFGenerator
    from orchestrator.generators.testing import build_tiny_lm

    with tempfile.TemporaryDirectory() as tmp:
        model = args.model or str(build_tiny_lm(Path(tmp) / args.size, n_positions=16384,
                                                **SIZES[args.size]))
        config = GeneratorConfig(backend="hf", max_new_tokens=args.max_new_tokens,
                                 hf=HFConfig(model=model, device=args.device,
                                             batch_size=args.batch_size,
                                             gpu_batch_size=args.batch_size,
                                             fast_decode=args.fast_decode))
        started = time.monotonic()
        gen = HFGenerator(config)
        load_s = time.monotonic() - started
        program = Program.load(ROOT / "programs" / "codelm")
        parent = Parent("seed", program.source_files())
        # warm-up; with fast decoding at the timed batch's shapes, so compiling is not timed
        warm = min(args.n, args.batch_size) if gen.fast else 1
        gen.propose(GenerationRequest(program, (parent,), n=warm, seed=99))
        started = time.monotonic()
        proposals = gen.propose(GenerationRequest(program, (parent,), n=args.n, seed=0))
        wall = time.monotonic() - started
    calls = [p.call for p in proposals if p.call is not None]
    tokens_out = sum(c.tokens_out for c in calls)
    outcome = Counter("valid" if p.valid else (p.rejection or "?").split(":")[0]
                      for p in proposals)
    print(json.dumps({
        "device": gen.device,
        "gpu": torch.cuda.get_device_name() if gen.device.startswith("cuda") else None,
        "dtype": str(next(gen.model.parameters()).dtype),
        "model": args.model or f"random GPT-2 ({args.size})",
        "params": sum(p.numel() for p in gen.model.parameters()),
        "load_s": round(load_s, 2),
        "proposals": args.n,
        "batch_size": args.batch_size,
        "fast_decode": gen.fast,
        "prompt_tokens": calls[0].tokens_in if calls else 0,
        "tokens_out": tokens_out,
        "wall_s": round(wall, 3),
        "tokens_per_s": round(tokens_out / wall, 1) if wall else None,
        "errors": [c.error for c in calls if c.error][:3],
        "outcomes": dict(outcome),
    }, indent=1))


if __name__ == "__main__":
    main()

"""``hf`` on CUDA: the model is placed on the GPU by itself and generates there."""

from __future__ import annotations

import pytest
import torch

from orchestrator.generators.base import GenerationRequest, Parent
from orchestrator.generators.config import GeneratorConfig, HFConfig

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA GPU on this machine"),
]


def test_hf_picks_cuda_and_records_proposals_there(tiny_lm, toy):
    from orchestrator.generators.hf import HFGenerator

    generator = HFGenerator(GeneratorConfig(backend="hf", max_new_tokens=16,
                                            hf=HFConfig(model=str(tiny_lm), device="auto")))
    assert generator.device.startswith("cuda")
    assert next(generator.model.parameters()).is_cuda
    parent = Parent("p0", toy.source_files(), {"val_bpb": 1.5})
    proposals = generator.propose(GenerationRequest(toy, (parent,), n=2, seed=0))
    assert len(proposals) == 2
    assert all(p.call is not None and p.call.error is None and p.call.tokens_out > 0
               for p in proposals)


def test_on_cuda_a_whole_batch_decodes_at_once_with_a_static_cache(tiny_lm, toy):
    """The GPU path: fast decoding is on by itself, a proposal batch is one generate call, and
    greedy text matches the dynamic-cache eager path."""
    from orchestrator.generators.hf import HFGenerator

    texts = {}
    for mode in ("auto", "off"):
        gen = HFGenerator(GeneratorConfig(
            backend="hf", max_new_tokens=16, temperature=0,
            hf=HFConfig(model=str(tiny_lm), device="cuda", dtype="float32", batch_size=2,
                        gpu_batch_size=8, fast_decode=mode)))
        assert gen.fast == (mode == "auto") and gen.batch_size == 8
        parent = Parent("p0", toy.source_files(), {"val_bpb": 1.5})
        proposals = gen.propose(GenerationRequest(toy, (parent,), n=6, seed=3))
        calls = [p.call for p in proposals]
        assert all(c is not None and c.error is None for c in calls), calls
        assert len({c.latency_s for c in calls if c is not None}) == 1  # one generate call
        texts[mode] = [c.response for c in calls if c is not None]
    assert texts["auto"] == texts["off"]

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

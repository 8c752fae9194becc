"""codelm on CUDA: training picks the GPU, the export is scored there, and it samples there."""

from __future__ import annotations

import json

import pytest
import torch

from orchestrator.generators.inprocess import InProcessCompleter
from tests.programs.test_codelm_program import CODELM, bare

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA GPU on this machine"),
]


def test_codelm_trains_on_cuda_is_scored_and_samples_there(tmp_path):
    rc, msgs, err = bare(CODELM / "train.py", SELFPROG_OUT=str(tmp_path),
                         SELFPROG_TIME_BUDGET_S="10", SELFPROG_DATA=str(CODELM / "data" / "train"))
    assert rc == 0, err[-2000:]
    assert any(m["type"] == "log" and " on cuda " in m["text"] for m in msgs), msgs[:3]
    rate = [m for m in msgs if m["type"] == "progress"][-1]["metrics"]["bytes_per_s"]
    print(f"codelm seed on CUDA: {rate:,.0f} bytes/s over a 10 s budget")
    rc, msgs, err = bare(CODELM / "evaluate.py", SELFPROG_OUT=str(tmp_path),
                         SELFPROG_DATA=str(CODELM / "data" / "heldout"))
    assert rc == 0, err[-2000:]
    metrics = next(m for m in msgs if m["type"] == "result")["metrics"]
    assert 0 < metrics["val_bpb"] < 8, json.dumps(metrics)
    lm = InProcessCompleter.load(tmp_path)
    assert lm.device == "cuda"
    assert len(lm.complete("def test_", max_new_bytes=48, seed=0)) > 0


def with_settings(text: str, values: dict) -> str:
    """train.py with some declared ``# search:`` settings set (as a variant would set them)."""
    from orchestrator.generators.searchspace import find_settings, render, substitute

    found = {s.name: s for s in find_settings("train.py", text)}
    return substitute(text, [(found[k], render(found[k], v)) for k, v in values.items()])


def test_on_cuda_the_batch_grows_in_bf16_and_compiling_is_a_setting(tmp_path):
    source = (CODELM / "train.py").read_text()
    for name, values in (("grown", {}), ("compiled", {"COMPILE": "on", "GPU_BATCH_MAX_SCALE": 4})):
        script = CODELM / f".train_{name}_{tmp_path.name}.py"
        script.write_text(with_settings(source, values))
        try:
            out = tmp_path / name
            rc, msgs, err = bare(script, SELFPROG_OUT=str(out), SELFPROG_TIME_BUDGET_S="20",
                                 SELFPROG_DATA=str(CODELM / "data" / "train"))
        finally:
            script.unlink()
        assert rc == 0, err[-2000:]
        meta = json.loads((out / "model.json").read_text())
        assert meta["bf16"] == torch.cuda.is_bf16_supported()
        assert meta["compiled"] == (name == "compiled")
        assert meta["batch"] > 32, meta  # the seed's batch leaves a GPU idle: it must grow
        assert meta["batch"] <= 32 * (4 if name == "compiled" else 32)
        print(f"codelm {name} on CUDA: {meta['train_bytes_per_s']:,.0f} bytes/s, "
              f"batch {meta['batch']}")

"""``hf`` end to end with a tiny random-weight model loaded by path: proposals are recorded,
and a random model's invalid ones are rejections, not crashes."""

from __future__ import annotations

from pathlib import Path

import pytest

from orchestrator.errors import ConfigError
from orchestrator.generators.base import GenerationRequest, Parent, Reason
from orchestrator.generators.config import GeneratorConfig, HFConfig
from orchestrator.program import Program

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def hf(tiny_lm):
    from orchestrator.generators.hf import HFGenerator

    config = GeneratorConfig(backend="hf", max_new_tokens=12,
                             hf=HFConfig(model=str(tiny_lm), device="auto", batch_size=2))
    return HFGenerator(config)


def test_tiny_model_goes_through_end_to_end(hf, toy):
    parent = Parent("p0", toy.source_files(), {"val_bpb": 1.5})
    proposals = hf.propose(GenerationRequest(toy, (parent,), n=3, seed=1))
    assert len(proposals) == 3
    for p in proposals:
        call = p.call
        assert call.backend == "hf" and call.model == hf.model_name
        assert "<|assistant|>" in call.prompt, "the tokenizer's chat template was applied"
        assert "N_LAYER = 2" in call.prompt
        assert call.tokens_in > 1000 and 0 < call.tokens_out <= 12 and call.latency_s > 0
        assert call.error is None and call.kind == "edit"
        assert call.finish_reason == ("length" if call.tokens_out == 12 else "stop")
        assert p.valid or p.rejection.split(":")[0] in set(Reason)
    assert hf.device in ("cpu", "cuda")


def test_same_seed_samples_the_same_answers(hf, toy):
    parent = Parent("p0", toy.source_files())
    a = hf.propose(GenerationRequest(toy, (parent,), n=2, seed=5))
    b = hf.propose(GenerationRequest(toy, (parent,), n=2, seed=5))
    assert [p.call.response for p in a] == [p.call.response for p in b]


def test_context_comes_from_the_model_and_bounds_the_prompt(hf, toy):
    assert hf.context_tokens == 4096
    small = type(hf).__new__(type(hf))
    small.__dict__.update(hf.__dict__)
    small.config = hf.config.model_copy(update={"hf": HFConfig(model="x", context_tokens=256)})
    (p,) = small.propose(GenerationRequest(toy, (Parent("p0", toy.source_files()),)))
    assert p.rejection.startswith("context:") and p.call is None


def test_plain_prompt_without_chat_template(hf):
    from orchestrator.generators.prompt import Prompt

    prompt = Prompt([{"role": "system", "content": "S"}, {"role": "user", "content": "U"}])
    saved, hf.chat = hf.chat, False
    try:
        assert hf.render(prompt) == "S\n\nU\n\n"
    finally:
        hf.chat = saved


def test_a_model_that_does_not_load_is_a_config_error(tmp_path):
    from orchestrator.generators.hf import HFGenerator

    with pytest.raises(ConfigError, match="does not load"):
        HFGenerator(GeneratorConfig(hf=HFConfig(model=str(tmp_path))))


def test_no_parent_writes_from_the_task_spec(hf):
    task = Program.load(Path(__file__).resolve().parents[2] / "programs" / "tasks" / "digits")
    (p,) = hf.propose(GenerationRequest(task, (), seed=0))
    assert p.parent_id is None and p.call is not None
    assert "Train data:" in p.call.prompt and "The skeleton to complete" in p.call.prompt
    assert p.valid or p.rejection.split(":")[0] in set(Reason)


def test_fast_decoding_static_cache_samples_what_the_dynamic_cache_does(tiny_lm, toy):
    """``fast_decode`` (a static KV cache, prompts padded to a multiple of 64 tokens, the whole
    batch at once) is the GPU path; forced on a CPU it must give the same greedy text."""
    from orchestrator.generators.hf import HFGenerator

    texts = {}
    for mode in ("off", "on"):
        gen = HFGenerator(GeneratorConfig(
            backend="hf", max_new_tokens=10, temperature=0,
            hf=HFConfig(model=str(tiny_lm), device="cpu", batch_size=3, fast_decode=mode)))
        assert gen.fast == (mode == "on") and gen.batch_size == 3
        parent = Parent("p0", toy.source_files(), {"val_bpb": 1.5})
        proposals = gen.propose(GenerationRequest(toy, (parent,), n=3, seed=4))
        calls = [p.call for p in proposals]
        assert all(c is not None and not c.error for c in calls), [c.error for c in calls if c]
        texts[mode] = [c.response for c in calls if c is not None]
    assert texts["on"] == texts["off"]
    assert HFGenerator(GeneratorConfig(backend="hf", hf=HFConfig(model=str(tiny_lm),
                                                                 device="cpu"))).fast is False

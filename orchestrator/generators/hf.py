"""``hf``: a local transformers causal LM (a hub id or a local folder), loaded once.

The chat template is used when the tokenizer has one, otherwise the prompt is completed as plain
text. Samples are drawn in batches (left padding), on CUDA when present: there a whole proposal
batch is one ``generate`` call, decoded with a static KV cache and a compiled step
(``hf.fast_decode``). A failed ``generate`` (out of memory, a bad config) is recorded on the calls
of its batch, never raised.
"""

from __future__ import annotations

import time
from typing import Any, cast

from orchestrator.errors import ConfigError
from orchestrator.generators.base import GenerationCall
from orchestrator.generators.config import GeneratorConfig
from orchestrator.generators.lm import LMGenerator
from orchestrator.generators.prompt import Prompt

FAST_PAD = 64
"""With ``fast_decode`` prompts are left-padded to a multiple of this many tokens: the static
cache's (and the compiled step's) shapes then repeat from batch to batch instead of recompiling."""
_TEMPLATE_SLACK = 32
"""Tokens a chat template adds around the messages, allowed for when fitting a prompt."""


def pick_device(requested: str) -> str:
    """``auto`` → ``cuda`` when torch sees a GPU, else ``cpu``."""
    import torch

    if requested == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    return requested


class HFGenerator(LMGenerator):
    """Samples from a transformers causal LM."""

    name = "hf"

    def __init__(self, config: GeneratorConfig):
        super().__init__(config)
        import torch
        import transformers
        from packaging.version import Version

        hf = config.hf
        if not hf.model:
            raise ConfigError("generator.hf.model is not set")
        self.model_name = hf.model
        self.device = pick_device(hf.device)
        dtype = {"float32": torch.float32, "float16": torch.float16,
                 "bfloat16": torch.bfloat16}.get(hf.dtype)
        if dtype is None:
            on_gpu = self.device.startswith("cuda")
            dtype = (torch.bfloat16 if on_gpu and torch.cuda.is_bf16_supported()
                     else torch.float16 if on_gpu else torch.float32)
        key = "dtype" if Version(transformers.__version__) >= Version("4.56") else "torch_dtype"
        try:
            self.tokenizer = transformers.AutoTokenizer.from_pretrained(hf.model)
            model = transformers.AutoModelForCausalLM.from_pretrained(hf.model, **{key: dtype})
        except (OSError, ValueError, KeyError) as exc:
            raise ConfigError(f"generator.hf.model {hf.model!r} does not load: {exc}") from None
        self.model = model.to(self.device).eval()
        if self.tokenizer.pad_token is None:
            self.tokenizer.pad_token = self.tokenizer.eos_token
        self.tokenizer.padding_side = "left"
        self.chat = bool(getattr(self.tokenizer, "chat_template", None))
        on_cuda = self.device.startswith("cuda")
        self.fast = hf.fast_decode == "on" or (hf.fast_decode == "auto" and on_cuda)
        self.batch_size = max(hf.batch_size, hf.gpu_batch_size) if on_cuda else hf.batch_size

    @property
    def context_tokens(self) -> int:
        if self.config.hf.context_tokens:
            return self.config.hf.context_tokens
        cfg = self.model.config
        for attr in ("max_position_embeddings", "n_positions", "seq_length"):
            value = getattr(cfg, attr, None)
            if isinstance(value, int) and value > 0:
                return value
        limit = self.tokenizer.model_max_length
        return limit if isinstance(limit, int) and limit < 1_000_000 else 2048

    def count_tokens(self, text: str) -> int:
        return len(self.tokenizer(text, add_special_tokens=False).input_ids) + _TEMPLATE_SLACK

    def render(self, prompt: Prompt) -> str:
        """The text fed to the model: the chat template applied, or the plain prompt."""
        if self.chat:
            text = self.tokenizer.apply_chat_template(
                prompt.messages, tokenize=False, add_generation_prompt=True
            )
            return cast(str, text)  # untokenized: the template's text
        return prompt.text

    def complete(self, prompts: list[Prompt], seed: int) -> list[GenerationCall]:
        size = self.batch_size
        calls: list[GenerationCall] = []
        for start in range(0, len(prompts), size):
            calls.extend(self._batch(prompts[start : start + size], seed + start))
        return calls

    def _batch(self, prompts: list[Prompt], seed: int) -> list[GenerationCall]:
        import torch

        texts = [self.render(p) for p in prompts]
        calls = [GenerationCall(self.name, self.model_name, t, "", kind="edit") for t in texts]
        started = time.monotonic()
        try:
            inputs = self.tokenizer(texts, return_tensors="pt", padding=True,
                                    pad_to_multiple_of=FAST_PAD if self.fast else None,
                                    add_special_tokens=False).to(self.device)
            width = inputs["input_ids"].shape[1]
            room = max(1, min(self.config.max_new_tokens, self.context_tokens - width))
            torch.manual_seed(seed)
            sampling: dict[str, Any] = {"do_sample": False}
            if self.config.temperature > 0:  # the model's own top_p/top_k defaults still apply
                sampling = {"do_sample": True, "temperature": self.config.temperature}
            if self.fast:  # a static cache: transformers compiles the decoding step for it
                sampling["cache_implementation"] = "static"
            with torch.inference_mode():
                output = self.model.generate(**inputs, max_new_tokens=room, **sampling,
                                             pad_token_id=self.tokenizer.pad_token_id)
        except (RuntimeError, ValueError, IndexError) as exc:
            for call in calls:
                call.error = f"generate failed on {self.device}: {type(exc).__name__}: {exc}"
                call.latency_s = time.monotonic() - started
            return calls
        latency = time.monotonic() - started
        pad = self.tokenizer.pad_token_id
        for i, call in enumerate(calls):
            new = output[i, width:]
            call.response = cast(str, self.tokenizer.decode(new, skip_special_tokens=True))
            call.tokens_in = int(inputs["attention_mask"][i].sum())
            call.tokens_out = int((new != pad).sum()) if pad is not None else len(new)
            call.latency_s = latency
            # all ``room`` tokens used and no end token among them: cut at the limit
            call.finish_reason = "length" if call.tokens_out >= room else "stop"
        return calls

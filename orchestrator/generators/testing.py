"""A tiny causal LM built on disk: random GPT-2 weights and a locally trained BPE tokenizer.

Where no model hub can be reached (CI, air-gapped machines) the ``hf`` and ``openai`` backends
are tested against this model, and ``benchmarks/hf_generate.py`` measures the ``hf`` backend's
throughput with it. Its samples are noise; what it exercises is the plumbing around them.
"""

from __future__ import annotations

from pathlib import Path

CHAT_TEMPLATE = (
    "{% for m in messages %}<|{{ m['role'] }}|>\n{{ m['content'] }}\n{% endfor %}"
    "{% if add_generation_prompt %}<|assistant|>\n{% endif %}"
)
_CORPUS = [
    "def train(model, data):\n    for step in range(STEPS):\n        loss = model(data)\n",
    "LEARNING_RATE = 1e-3  # search: log[1e-4, 3e-2]\nN_LAYER = 2\n",
    "<<<<<<< SEARCH\nx = 1\n=======\nx = 2\n>>>>>>> REPLACE\n",
    "```python\nimport torch\nclass Block(torch.nn.Module):\n    pass\n```\n",
]


def build_tiny_lm(folder: Path, *, n_positions: int = 512, chat_template: bool = True,
                  n_embd: int = 32, n_layer: int = 2, n_head: int = 2) -> Path:
    """Write a random-weight GPT-2 (by default two layers, 32 wide) and its tokenizer to
    ``folder``; with ``chat_template`` the tokenizer carries a minimal chat template."""
    import torch
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import GPT2Config, GPT2LMHeadModel, PreTrainedTokenizerFast

    folder.mkdir(parents=True, exist_ok=True)
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=400,
        special_tokens=["<|endoftext|>"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
    )
    tok.train_from_iterator(_CORPUS * 4, trainer=trainer)
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok, eos_token="<|endoftext|>", bos_token="<|endoftext|>",
        pad_token="<|endoftext|>",
    )
    if chat_template:
        fast.chat_template = CHAT_TEMPLATE
    fast.save_pretrained(folder)
    torch.manual_seed(0)
    config = GPT2Config(
        vocab_size=len(fast), n_positions=n_positions, n_embd=n_embd, n_layer=n_layer,
        n_head=n_head,
        bos_token_id=fast.eos_token_id, eos_token_id=fast.eos_token_id,
    )
    GPT2LMHeadModel(config).save_pretrained(folder)
    return folder

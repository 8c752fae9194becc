"""Tiny random-weight models built on disk, for tests: no training, no model hub.

:func:`build_tiny_lm` writes a transformers causal LM (random GPT-2 weights and a locally trained
BPE tokenizer): where no model hub can be reached (CI, air-gapped machines) the ``hf`` and
``openai`` backends are tested against it, and ``benchmarks/hf_generate.py`` measures the ``hf``
backend's throughput with it. :func:`export_tiny` writes a codelm export (``model.pt`` +
``model.json``) for the ``self`` backend and its completers. Their samples are noise; what they
exercise is the plumbing around them. torch and transformers are imported only when called.
"""

from __future__ import annotations

import importlib.util
import json
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
SEED_TRAIN = Path(__file__).resolve().parents[2] / "programs" / "codelm" / "train.py"
"""The seed codelm's training script, whose model class :func:`export_tiny` exports."""


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


def export_tiny(folder: Path, seed: int = 0, context: int = 32) -> Path:
    """Export a tiny random-weight codelm to ``folder`` (for tests: no training, under a second).

    It uses the seed program's own model code, so it has exactly the shipped export format.

    Returns:
        ``folder``, now holding ``model.pt`` and ``model.json``.
    """
    import torch

    from sandbox.codelm import META_FILE, MODEL_FILE

    spec = importlib.util.spec_from_file_location("_codelm_seed_train", SEED_TRAIN)
    assert spec and spec.loader
    train = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(train)
    torch.manual_seed(seed)
    model = train.GPT(n_layer=1, n_head=2, head_dim=8, mlp_ratio=2, context=context,
                      activation="gelu", dropout=0.0).eval()
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    torch.jit.script(model).save(str(folder / MODEL_FILE))
    meta = {"format": "codelm-bytes-v1", "context": context, "vocab": 256,
            "params": sum(p.numel() for p in model.parameters()), "random_weights": True}
    (folder / META_FILE).write_text(json.dumps(meta, indent=1))
    return folder

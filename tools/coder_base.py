"""Put a base model where ``programs/coder`` finds it: ``data/train/base`` (data-only files).

    python tools/coder_base.py tiny                          # random weights, BPE trained here
    python tools/coder_base.py Qwen/Qwen2.5-Coder-0.5B       # from your Hugging Face cache
    python tools/coder_base.py /models/my-coder              # from a local folder

There is no model hub on the project's machines, so ``tiny`` builds a GPT-2-style model with
random weights and a byte-level BPE tokenizer trained in a second on the coder's train corpus:
what CI fine-tunes. A named model is read offline from the local cache (or folder) with
``trust_remote_code=False`` and written back as safetensors, config.json and tokenizer.json only,
so what the TRAIN stage reads is data, never a pickle or a config naming Python code.
"""

from __future__ import annotations

import argparse
import json
import lzma
import os
import shutil
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_DEST = ROOT / "programs" / "coder" / "data" / "train" / "base"
EOS = "<|endoftext|>"


def corpus_text(limit: int = 400_000) -> str:
    """The start of the coder's train corpus (what the tiny tokenizer learns from)."""
    raw = lzma.decompress((ROOT / "programs/coder/data/train/corpus.txt.xz").read_bytes())
    return raw[:limit].decode("utf-8", errors="ignore")


def tiny(dest: Path, *, vocab: int = 512, width: int = 64, layers: int = 2, heads: int = 2,
         positions: int = 256, seed: int = 0, text: str | None = None) -> Path:
    """A tiny GPT-2 with random weights and a byte-level BPE of ``vocab`` tokens, saved to
    ``dest`` (config.json, generation_config.json, model.safetensors, tokenizer.json,
    tokenizer_config.json). Deterministic for a seed and text."""
    import torch
    from tokenizers import ByteLevelBPETokenizer
    from transformers import GPT2Config, GPT2LMHeadModel

    dest.mkdir(parents=True, exist_ok=True)
    bpe = ByteLevelBPETokenizer()
    bpe.train_from_iterator([text if text is not None else corpus_text()], vocab_size=vocab,
                            min_frequency=2, special_tokens=[EOS], show_progress=False)
    bpe.save(str(dest / "tokenizer.json"))
    eos = bpe.token_to_id(EOS)
    torch.manual_seed(seed)
    config = GPT2Config(vocab_size=bpe.get_vocab_size(), n_positions=positions, n_embd=width,
                        n_layer=layers, n_head=heads, bos_token_id=eos, eos_token_id=eos)
    GPT2LMHeadModel(config).save_pretrained(str(dest))
    (dest / "tokenizer_config.json").write_text(json.dumps(
        {"tokenizer_class": "PreTrainedTokenizerFast", "eos_token": EOS, "bos_token": EOS}))
    _readable(dest)
    return dest


def _readable(dest: Path) -> None:
    # save_pretrained writes the weights 0600; the containers read them as another user
    for path in dest.iterdir():
        path.chmod(0o644)


def from_model(name: str, dest: Path) -> Path:
    """Copy ``name`` (a folder, or a hub id already in the local cache) into ``dest`` as
    data-only files; nothing is downloaded and no code of the model's runs.

    Raises:
        SystemExit: the model or its fast tokenizer is not found locally, or needs remote code.
    """
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from transformers import AutoModelForCausalLM, AutoTokenizer

    try:
        model = AutoModelForCausalLM.from_pretrained(name, trust_remote_code=False)
        tokenizer = AutoTokenizer.from_pretrained(name, trust_remote_code=False)
    except (OSError, ValueError) as exc:
        raise SystemExit(f"cannot load {name} locally without remote code: {exc}") from None
    if not getattr(tokenizer, "is_fast", False):
        raise SystemExit(f"{name}: no fast tokenizer (tokenizer.json), the one format loaded")
    if dest.exists():
        shutil.rmtree(dest)
    dest.mkdir(parents=True)
    model.save_pretrained(str(dest), safe_serialization=True)
    tokenizer.backend_tokenizer.save(str(dest / "tokenizer.json"))
    (dest / "tokenizer_config.json").write_text(json.dumps(
        {"tokenizer_class": "PreTrainedTokenizerFast", "eos_token": tokenizer.eos_token}))
    config = json.loads((dest / "config.json").read_text())
    config.pop("auto_map", None)
    (dest / "config.json").write_text(json.dumps(config, indent=1))
    for extra in dest.iterdir():
        if extra.name not in {"config.json", "generation_config.json", "tokenizer.json",
                              "tokenizer_config.json"} and not extra.name.endswith(".safetensors") \
                and extra.name != "model.safetensors.index.json":
            extra.unlink()
    _readable(dest)
    return dest


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("model", help="'tiny', a hub id in your local cache, or a folder")
    parser.add_argument("--dest", type=Path, default=DEFAULT_DEST)
    args = parser.parse_args(argv)
    made = tiny(args.dest) if args.model == "tiny" else from_model(args.model, args.dest)
    print(f"base model in {made}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

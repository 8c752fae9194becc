"""Data-only Hugging Face exports: what a folder may hold, and loading it without running its code.

A variant of ``programs/coder`` exports a causal LM as weights (safetensors), ``config.json`` and a
tokenizer (``tokenizer.json``). Such a folder can still carry code: a pickled
``pytorch_model.bin`` runs its payload when unpickled, ``auto_map`` in a config names Python
modules that ``trust_remote_code`` would import, a ``tokenizer_class`` may name a custom class.
So a folder is accepted only when

* every file is on :data:`ALLOWED` (or a safetensors shard), a plain file, no link, under a size
  cap — no pickle, no ``.py``, no chat template;
* no JSON file holds ``auto_map``, ``custom_pipelines`` or ``quantization_config`` (each names
  code or a loader outside transformers' own model classes);

and it is loaded with ``trust_remote_code=False``, ``use_safetensors=True``, offline, the
attention implementation fixed to PyTorch's own, and the tokenizer read by the ``tokenizers``
library straight from ``tokenizer.json`` (never ``AutoTokenizer``): the tokenizer class a config
names is never looked up. :func:`check` uses only the standard library, so the host runs it
before anything starts; :func:`load` needs torch and transformers (the runtime image has both).
"""

from __future__ import annotations

import json
import os
import re
import stat
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ALLOWED = frozenset({
    "config.json", "generation_config.json", "tokenizer.json", "tokenizer_config.json",
    "special_tokens_map.json", "model.safetensors", "model.safetensors.index.json", "model.json",
})
"""The files an export may hold (besides safetensors shards); anything else refuses it."""
SHARD = re.compile(r"model-\d{5}-of-\d{5}\.safetensors")
REFUSED_KEYS = frozenset({"auto_map", "custom_pipelines", "quantization_config"})
"""Config keys that name code outside transformers' own classes."""
MAX_JSON_BYTES = 32 * 1024**2
MAX_WEIGHT_BYTES = 64 * 1024**3


class ExportError(Exception):
    """The folder is not a data-only causal-LM export (the message names the file and why)."""


def is_export(folder: Path) -> bool:
    """Whether ``folder`` looks like an HF export (it has a ``config.json``); not a check."""
    return (folder / "config.json").is_file()


def check(folder: Path) -> dict[str, Any]:
    """Refuse a folder that could run code when loaded; return its parsed ``config.json``.

    Raises:
        ExportError: a file off the allow-list, a link or special file, a file too large or
            unreadable by the sandbox user, malformed JSON, a refused key, or no weights or
            tokenizer.
    """
    if not folder.is_dir():
        raise ExportError(f"{folder}: not a folder")
    names = sorted(os.listdir(folder))
    for name in names:
        path = folder / name
        info = os.lstat(path)
        if name not in ALLOWED and not SHARD.fullmatch(name):
            raise ExportError(f"{path}: not a file a data-only export may hold (allowed: "
                              f"{', '.join(sorted(ALLOWED))}, model-NNNNN-of-NNNNN.safetensors)")
        if not stat.S_ISREG(info.st_mode):
            raise ExportError(f"{path}: not a plain file (links and folders are refused)")
        cap = MAX_JSON_BYTES if name.endswith(".json") else MAX_WEIGHT_BYTES
        if info.st_size > cap:
            raise ExportError(f"{path}: {info.st_size} bytes, more than {cap}")
        if not info.st_mode & stat.S_IROTH:
            raise ExportError(f"{path}: not readable by the sandbox user (chmod o+r)")
    if "tokenizer.json" not in names:
        raise ExportError(f"{folder}: no tokenizer.json (the one tokenizer format loaded)")
    if not any(n == "model.safetensors" or SHARD.fullmatch(n) for n in names):
        raise ExportError(f"{folder}: no safetensors weights (model.safetensors)")
    parsed = {n: _json(folder / n) for n in names if n.endswith(".json") and n != "tokenizer.json"}
    for name, value in parsed.items():
        found = _refused(value)
        if found:
            raise ExportError(f"{folder / name}: holds {found!r}, which names code to import; "
                              "a data-only export may not")
    config = parsed.get("config.json")
    if not isinstance(config, dict) or not isinstance(config.get("model_type"), str):
        raise ExportError(f"{folder / 'config.json'}: no 'model_type'")
    return config


def _json(path: Path) -> Any:
    try:
        return json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise ExportError(f"{path}: not valid JSON: {exc}") from None


def _refused(value: Any) -> str | None:
    if isinstance(value, dict):
        for key, inner in value.items():
            if key in REFUSED_KEYS:
                return str(key)
            found = _refused(inner)
            if found:
                return found
    elif isinstance(value, list):
        for inner in value:
            found = _refused(inner)
            if found:
                return found
    return None


@dataclass
class Loaded:
    """A checked export in memory."""

    model: Any
    """A transformers causal LM, in eval mode, on ``device``."""
    tokenizer: Any
    """A ``tokenizers.Tokenizer`` read from tokenizer.json."""
    context: int
    """Most tokens the model attends to (its position limit, or 2048 when it has none)."""
    device: str
    eos_id: int | None


def load(folder: Path, device: str = "cpu") -> Loaded:
    """Check ``folder`` (:func:`check`) and load it as data: no code of the folder's runs.

    Raises:
        ExportError: the check fails, or transformers cannot build the model from it.
    """
    config_dict = check(folder)
    os.environ["HF_HUB_OFFLINE"] = "1"
    os.environ["TRANSFORMERS_OFFLINE"] = "1"
    import torch
    from tokenizers import Tokenizer
    from transformers import AutoConfig, AutoModelForCausalLM

    try:
        config = AutoConfig.from_pretrained(str(folder), trust_remote_code=False,
                                            local_files_only=True)
        model = AutoModelForCausalLM.from_pretrained(
            str(folder), config=config, trust_remote_code=False, use_safetensors=True,
            local_files_only=True, attn_implementation="sdpa", dtype=torch.float32)
        tokenizer = Tokenizer.from_file(str(folder / "tokenizer.json"))
    except Exception as exc:  # noqa: BLE001 - any failure to build it from data is a refusal
        raise ExportError(f"{folder}: transformers could not load it as a causal LM: "
                          f"{type(exc).__name__}: {str(exc)[:500]}") from None
    model.to(device).eval()
    context = 2048
    for key in ("max_position_embeddings", "n_positions", "n_ctx"):
        value = config_dict.get(key)
        if isinstance(value, int) and not isinstance(value, bool) and value > 0:
            context = min(value, 32768)
            break
    eos = config_dict.get("eos_token_id")
    eos_id = eos if isinstance(eos, int) and not isinstance(eos, bool) else None
    return Loaded(model, tokenizer, context, device, eos_id)

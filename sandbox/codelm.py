"""Sampling from an exported codelm, inside a container: ``python -m sandbox.codelm``.

A variant's exported model (``model.pt``, TorchScript, plus ``model.json``) is code the variant
wrote: loading it can run ``__setstate__``, and its ``forward`` may call ops that read or write
files, loop forever or eat memory. So the host never loads it for the ``self`` generator; it starts
a hardened container that runs this module with the model folder mounted read-only at
``SELFPROG_CODELM_MODEL`` (default ``/model``).

The request is one JSON object, read from ``SELFPROG_CODELM_REQUEST`` (or stdin when unset)::

    {"prompts": [{"prompt": "def f():\\n", "max_new_bytes": 200, "temperature": 0.8,
                  "seed": 1, "stop": "\\n\\n"}, ...]}

The answer is one JSON line on stdout: ``{"completions": [{"text": ...} | {"error": ...}, ...]}``,
one entry per prompt, in order. A request or model that cannot be used at all exits non-zero with
the reason on stderr. Only the standard library and torch are used here.
"""

from __future__ import annotations

import codecs
import json
import math
import os
import sys
import warnings
from pathlib import Path

import torch

MODEL_FILE = "model.pt"
META_FILE = "model.json"
MAX_CONTEXT = 65536
"""Largest ``context`` a model.json may declare."""


class SampleError(Exception):
    """The model is missing, malformed, or failed while sampling."""


def parse_meta(text: str, where: str) -> int:
    """The ``context`` of a ``model.json`` text (reads nothing else; never loads the model).

    Raises:
        SampleError: not JSON, or no positive integer ``context`` up to ``MAX_CONTEXT``.
    """
    try:
        meta = json.loads(text)
    except json.JSONDecodeError as exc:
        raise SampleError(f"{where}: not valid JSON: {exc}") from None
    context = meta.get("context") if isinstance(meta, dict) else None
    if not isinstance(context, int) or isinstance(context, bool) or not 0 < context <= MAX_CONTEXT:
        raise SampleError(f"{where}: 'context' must be a positive integer, got {context!r}")
    return context


def load(folder: Path, device: str) -> tuple[torch.jit.ScriptModule, int]:
    """Load ``model.pt`` and the context from ``model.json``; this runs the model's own code.

    Raises:
        SampleError: a file is missing or malformed, or the archive does not load.
    """
    meta_path, model_path = folder / META_FILE, folder / MODEL_FILE
    if not meta_path.is_file() or not model_path.is_file():
        raise SampleError(f"{folder} holds no exported codelm ({MODEL_FILE} + {META_FILE})")
    try:
        context = parse_meta(meta_path.read_text(), str(meta_path))
    except UnicodeDecodeError as exc:
        raise SampleError(f"{meta_path}: not valid JSON: {exc}") from None
    try:
        with warnings.catch_warnings():
            # TorchScript is deprecated upstream but is still the one format that loads
            # with variable-length inputs and without running the variant's Python.
            warnings.simplefilter("ignore", DeprecationWarning)
            module = torch.jit.load(str(model_path), map_location=device)
    except (RuntimeError, ValueError) as exc:
        raise SampleError(f"{model_path}: not a loadable TorchScript module: {exc}") from None
    module.eval()
    return module, context


@torch.no_grad()
def sample(module: torch.jit.ScriptModule, context: int, device: str, prompt: str,
           max_new_bytes: int, temperature: float = 0.8, seed: int = 0,
           stop: str | None = None) -> str:
    """Continue ``prompt`` by up to ``max_new_bytes`` sampled bytes (the completion alone).

    Only the prompt's last ``context`` bytes are seen; the same seed, prompt and model give the
    same text on the same device; bytes that are not valid UTF-8 come back as U+FFFD; with
    ``stop``, sampling ends once the completion contains it and the result is cut before it.

    Raises:
        ValueError: a negative or NaN temperature.
        SampleError: the module fails or returns logits of the wrong shape.
    """
    if temperature < 0 or math.isnan(temperature):
        raise ValueError(f"temperature must be >= 0, got {temperature}")
    gen = torch.Generator(device=device).manual_seed(seed)
    window = list(prompt.encode("utf-8"))[-context:] or [ord("\n")]
    decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
    text = ""
    for _ in range(max_new_bytes):
        idx = torch.tensor([window], dtype=torch.long, device=device)
        logits = _logits(module, idx)
        if temperature == 0:
            nxt = int(logits.argmax())
        else:
            probs = torch.softmax(logits.float() / temperature, dim=-1)
            nxt = int(torch.multinomial(probs, 1, generator=gen))
        window = (window + [nxt])[-context:]
        text += decoder.decode(bytes([nxt]))
        if stop and stop in text:
            return text[: text.index(stop)]
    return text + decoder.decode(b"", final=True)


def _logits(module: torch.jit.ScriptModule, idx: torch.Tensor) -> torch.Tensor:
    try:
        out = module(idx)
    except RuntimeError as exc:
        raise SampleError(f"the model failed while sampling: {exc}") from None
    if not isinstance(out, torch.Tensor) or out.dim() != 3 or out.shape[:2] != idx.shape \
            or out.shape[2] != 256:
        shape = tuple(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__
        raise SampleError(f"logits of shape {shape}, expected (1, {idx.shape[1]}, 256)")
    return out[0, -1]


def _prompts(request: object) -> list[dict]:
    prompts = request.get("prompts") if isinstance(request, dict) else None
    if not isinstance(prompts, list) or not all(isinstance(p, dict) for p in prompts):
        raise SampleError("the request needs 'prompts': a list of objects")
    return prompts


def _one(module: torch.jit.ScriptModule, context: int, device: str, p: dict) -> dict:
    try:
        text = sample(module, context, device, str(p["prompt"]), int(p["max_new_bytes"]),
                      float(p.get("temperature", 0.8)), int(p.get("seed", 0)), p.get("stop"))
    except (SampleError, ValueError, TypeError, KeyError) as exc:
        return {"error": f"{type(exc).__name__}: {exc}"}
    return {"text": text}


def main() -> int:
    raw = os.environ.get("SELFPROG_CODELM_REQUEST")
    try:
        prompts = _prompts(json.loads(raw if raw is not None else sys.stdin.read()))
        module, context = load(Path(os.environ.get("SELFPROG_CODELM_MODEL", "/model")), "cpu")
    except (SampleError, json.JSONDecodeError) as exc:
        print(f"sandbox.codelm: {exc}", file=sys.stderr)
        return 2
    completions = [_one(module, context, "cpu", p) for p in prompts]
    sys.stdout.write(json.dumps({"completions": completions}) + "\n")
    sys.stdout.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main())

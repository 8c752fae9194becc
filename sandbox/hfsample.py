"""Sampling from a data-only HF export (``programs/coder``), inside a container.

``python -m sandbox.hfsample`` is the HF counterpart of ``python -m sandbox.codelm``: the same
request (``SELFPROG_CODELM_REQUEST`` or stdin, the model folder at ``SELFPROG_CODELM_MODEL``) and
the same one-line JSON answer (``{"completions": [...], "scores": [...]}``), so the host's
``SandboxedCompleter`` and the ``self`` generator treat both alike. The folder is checked and
loaded as data only (:mod:`sandbox.hfexport`); it runs on CUDA when the container has a GPU.

Byte budgets become token budgets here: a completion stops once its text reaches
``max_new_bytes`` bytes; the prompt keeps its last tokens that fit the model's context. Under
``constraint: "python-block"`` the sample grows a line at a time: when a line is complete the
block so far must still be able to parse (``sandbox.codelm.viable``), else the tokens of that
line are drawn again (up to ``LINE_TRIES`` times); a line back at the top level ends it.
:class:`HFSampler` is also what an in-process completer and the GPU benchmark call.
"""

from __future__ import annotations

import json
import math
import os
import sys
from pathlib import Path
from typing import Any

import torch

from sandbox.codelm import LINE_TRIES, block_start, viable
from sandbox.hfexport import ExportError, Loaded, load

BYTES_PER_TOKEN = 2
"""A token model's context in bytes is its position limit times this (a low guess: code
tokenizers average 3-4 bytes a token), so a prompt fitted to it is never cut by the model."""
DRAW_FACTOR = 2
"""Under ``python-block`` at most this many times the byte budget is drawn in all."""


class SampleError(Exception):
    """A request the model could not answer."""


class HFSampler:
    """Completions and scores from one loaded export."""

    def __init__(self, loaded: Loaded):
        self.lm = loaded
        self.context = loaded.context
        self._cache: Any = None
        self._cached: list[int] = []

    def encode(self, text: str) -> list[int]:
        return list(self.lm.tokenizer.encode(text, add_special_tokens=False).ids)

    def decode(self, ids: list[int]) -> str:
        return str(self.lm.tokenizer.decode(ids, skip_special_tokens=False))

    @torch.no_grad()
    def _next(self, ids: list[int], temperature: float, gen: torch.Generator) -> int:
        """The next token after ``ids``. Successive calls that only append reuse the model's
        key/value cache; any other call (a line drawn again, a window past the context)
        recomputes from scratch."""
        window = ids[-self.context:] or [self.lm.eos_id or 0]
        fresh = window
        if self._cache is not None and len(window) == len(ids) and \
                0 < len(self._cached) < len(window) and window[: len(self._cached)] == self._cached:
            fresh = window[len(self._cached):]
        else:
            self._cache = None
        idx = torch.tensor([fresh], dtype=torch.long, device=self.lm.device)
        out = self.lm.model(input_ids=idx, cache=self._cache, use_cache=True)
        self._cache, self._cached = out.cache, list(window)
        logits = out.logits[0, -1].float()
        if not torch.isfinite(logits).any():
            raise SampleError("the model gave no finite logits")
        if temperature == 0:
            return int(logits.argmax())
        probs = torch.softmax(logits / temperature, dim=-1)
        return int(torch.multinomial(probs, 1, generator=gen))

    def complete(self, prompt: str, max_new_bytes: int, temperature: float = 0.8, seed: int = 0,
                 stop: str | None = None, constraint: str | None = None) -> str:
        """Continue ``prompt`` (the completion alone, at most ``max_new_bytes`` UTF-8 bytes).

        Raises:
            ValueError: a negative or NaN temperature, or an unknown constraint.
            SampleError: the model failed.
        """
        if temperature < 0 or math.isnan(temperature):
            raise ValueError(f"temperature must be >= 0, got {temperature}")
        if constraint not in (None, "python-block"):
            raise ValueError(f"unknown constraint {constraint!r}")
        gen = torch.Generator(device=self.lm.device).manual_seed(seed)
        self._cache = None
        base = self.encode(prompt)[-(self.context - 1):]
        if constraint == "python-block":
            return self._block(prompt, base, max_new_bytes, temperature, gen)
        out: list[int] = []
        text = ""
        while len(text.encode()) < max_new_bytes:
            nxt = self._next(base + out, temperature, gen)
            if nxt == self.lm.eos_id:
                break
            out.append(nxt)
            text = self.decode(out)
            if stop and stop in text:
                return text[: text.index(stop)]
        return text.encode()[:max_new_bytes].decode(errors="ignore")

    def _block(self, prompt: str, base: list[int], max_new_bytes: int, temperature: float,
               gen: torch.Generator) -> str:
        start = block_start(prompt)
        head = prompt[start:] if start is not None and prompt.endswith("\n") else None
        kept: list[int] = []  # tokens whose whole lines were accepted (plus a partial line)
        lines = ""  # the accepted whole lines
        out: list[int] = []
        tries = spent = 0
        while spent < DRAW_FACTOR * max_new_bytes:
            nxt = self._next(base + out, temperature, gen)
            spent += 1
            if nxt == self.lm.eos_id:
                break
            out.append(nxt)
            text = self.decode(out)
            if len(text.encode()) >= max_new_bytes:
                break
            if "\n" not in text[len(lines):]:
                continue
            whole = text[: text.rindex("\n") + 1]
            if whole.endswith("\n\n\n"):
                return whole.rstrip("\n") + "\n"  # two blank lines: where PEP 8 ends a block
            fresh = whole[len(lines):]
            top = [ln for ln in fresh.split("\n")[:-1]
                   if ln.strip() and not ln[0].isspace() and not ln.startswith("#")]
            if top:
                first = fresh.index(top[0])
                return lines + fresh[:first]  # back at the top level: the block is over
            if head is None or viable(head + whole):
                kept, lines, tries = list(out), whole, 0
                continue
            tries += 1
            out = list(kept)
            if tries >= LINE_TRIES or temperature == 0:
                break
        return lines

    @torch.no_grad()
    def score(self, prompt: str, continuations: list[str]) -> list[float]:
        """Natural-log probability of each continuation after ``prompt``, summed over its
        tokens (prompt and continuation tokenized apart, the prompt cut from the left to fit).

        Raises:
            SampleError: an empty continuation, or non-finite log-probabilities.
        """
        head = self.encode(prompt) or [self.lm.eos_id or 0]
        values = []
        for cont in continuations:
            tail = self.encode(cont)
            if not tail:
                raise SampleError("an empty continuation: there is nothing to score")
            step = len(tail) if len(tail) < self.context // 2 else max(1, self.context // 2)
            total = 0.0
            for at in range(0, len(tail), step):
                piece = tail[at : at + step]
                seq = (head + tail[: at + len(piece)])[-self.context:]
                idx = torch.tensor([seq], dtype=torch.long, device=self.lm.device)
                logp = torch.log_softmax(self.lm.model(input_ids=idx).logits[0].float(), -1)
                n = len(piece)
                positions = torch.arange(len(seq) - n - 1, len(seq) - 1, device=self.lm.device)
                targets = torch.tensor(seq[len(seq) - n:], dtype=torch.long, device=self.lm.device)
                total += float(logp[positions, targets].sum())
            if not math.isfinite(total):
                raise SampleError("the model gave non-finite log-probabilities")
            values.append(min(total, 0.0))
        return values


def answer(sampler: HFSampler, request: Any) -> dict[str, list[dict[str, Any]]]:
    """The JSON answer to one request (see the module docstring); per-entry errors inline.

    Raises:
        SampleError: the request is not an object with 'prompts' or 'scores' lists of objects.
    """
    if not isinstance(request, dict) or not ("prompts" in request or "scores" in request):
        raise SampleError("the request needs 'prompts' or 'scores': lists of objects")
    prompts, scores = request.get("prompts", []), request.get("scores", [])
    for key, entries in (("prompts", prompts), ("scores", scores)):
        if not isinstance(entries, list) or not all(isinstance(e, dict) for e in entries):
            raise SampleError(f"the request's {key!r} must be a list of objects")
    completions = []
    for p in prompts:
        try:
            completions.append({"text": sampler.complete(
                str(p["prompt"]), int(p["max_new_bytes"]), float(p.get("temperature", 0.8)),
                int(p.get("seed", 0)), p.get("stop"), p.get("constraint"))})
        except (SampleError, ValueError, TypeError, KeyError, RuntimeError) as exc:
            completions.append({"error": f"{type(exc).__name__}: {exc}"})
    scored = []
    for s in scores:
        try:
            conts = s["continuations"]
            if not isinstance(conts, list) or not all(isinstance(c, str) for c in conts):
                raise TypeError("'continuations' must be a list of strings")
            scored.append({"logprobs": sampler.score(str(s["prompt"]), conts)})
        except (SampleError, ValueError, TypeError, KeyError, RuntimeError) as exc:
            scored.append({"error": f"{type(exc).__name__}: {exc}"})
    return {"completions": completions, "scores": scored}


def main() -> int:
    raw = os.environ.get("SELFPROG_CODELM_REQUEST")
    device = "cuda" if torch.cuda.is_available() else "cpu"
    try:
        request = json.loads(raw if raw is not None else sys.stdin.read())
        sampler = HFSampler(load(Path(os.environ.get("SELFPROG_CODELM_MODEL", "/model")), device))
        reply = answer(sampler, request)
    except (SampleError, ExportError, json.JSONDecodeError) as exc:
        print(f"sandbox.hfsample: {exc}", file=sys.stderr)
        return 2
    sys.stdout.write(json.dumps(reply) + "\n")
    sys.stdout.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main())

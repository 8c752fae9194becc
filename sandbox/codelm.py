"""Sampling from an exported codelm, inside a container: ``python -m sandbox.codelm``.

A variant's exported model (``model.pt``, TorchScript, plus ``model.json``) is code the variant
wrote: loading it can run ``__setstate__``, and its ``forward`` may call ops that read or write
files, loop forever or eat memory. So the host never loads it for the ``self`` generator; it starts
a hardened container that runs this module with the model folder mounted read-only at
``SELFPROG_CODELM_MODEL`` (default ``/model``).

The request is one JSON object, read from ``SELFPROG_CODELM_REQUEST`` (or stdin when unset)::

    {"prompts": [{"prompt": "def f():\\n", "max_new_bytes": 200, "temperature": 0.8,
                  "seed": 1, "stop": "\\n\\n", "constraint": "python-block"}, ...],
     "scores": [{"prompt": "N_LAYER = ", "continuations": ["2\\n", "4\\n"]}, ...]}

(either key may be missing). The answer is one JSON line on stdout:
``{"completions": [{"text": ...} | {"error": ...}, ...], "scores": [{"logprobs": [...]} |
{"error": ...}, ...]}``, one entry per prompt, in order. A request or model that cannot be used
at all exits non-zero with the reason on stderr. Only the standard library and torch are used.

``constraint: "python-block"`` makes the sample a continuation of the Python block the prompt
ends in that can still parse: at each line end the block so far is checked (:func:`viable`) and
a line that can no longer become valid Python is drawn again (up to :data:`LINE_TRIES` times);
a line back at the top level ends the sample (the block is over).

``constraint: "python-expr"`` (with ``"names"``: the names the sample may use) makes the sample
one expression of :mod:`sandbox.pyexpr`'s small language, drawn byte by byte: a byte after which
the text can no longer become such an expression is taken out of the distribution and the byte
drawn again, and a newline (which ends the sample) is allowed only after a whole expression. If
the byte budget runs out first, the sample is its longest whole first part ('' when none).
"""

from __future__ import annotations

import codecs
import io
import json
import math
import os
import sys
import tokenize
import warnings
from pathlib import Path

import torch

from sandbox import pyexpr

MODEL_FILE = "model.pt"
META_FILE = "model.json"
MAX_CONTEXT = 65536
"""Largest ``context`` a model.json may declare."""
CONSTRAINTS = (None, "python-block", "python-expr")
LINE_TRIES = 8
"""Draws of one line under ``python-block`` before the sample ends at the last good line."""
DRAW_FACTOR = 2
"""Under ``python-block`` at most this many times ``max_new_bytes`` bytes are drawn in all
(redrawn lines included): the constraint at most doubles a sample's cost."""
SCORE_BATCH = 16
"""Sequences scored in one forward pass."""


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
           stop: str | None = None, constraint: str | None = None,
           names: tuple[str, ...] = ()) -> str:
    """Continue ``prompt`` by up to ``max_new_bytes`` sampled bytes (the completion alone).

    Only the prompt's last ``context`` bytes are seen; the same seed, prompt and model give the
    same text on the same device; bytes that are not valid UTF-8 come back as U+FFFD; with
    ``stop``, sampling ends once the completion contains it and the result is cut before it.

    Raises:
        ValueError: a negative or NaN temperature, or an unknown constraint.
        SampleError: the module fails or returns logits of the wrong shape.
    """
    if temperature < 0 or math.isnan(temperature):
        raise ValueError(f"temperature must be >= 0, got {temperature}")
    if constraint not in CONSTRAINTS:
        raise ValueError(f"unknown constraint {constraint!r}; known: {CONSTRAINTS}")
    if constraint == "python-block":
        return _sample_block(module, context, device, prompt, max_new_bytes, temperature, seed)
    if constraint == "python-expr":
        return _sample_expr(module, context, device, prompt, max_new_bytes, temperature, seed,
                            tuple(names))
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


def _next(module: torch.jit.ScriptModule, window: list[int], device: str, temperature: float,
          gen: torch.Generator) -> int:
    logits = _logits(module, torch.tensor([window], dtype=torch.long, device=device))
    if temperature == 0:
        return int(logits.argmax())
    probs = torch.softmax(logits.float() / temperature, dim=-1)
    return int(torch.multinomial(probs, 1, generator=gen))


def block_start(prompt: str) -> int | None:
    """The earliest top-level line (among the last 20) from which the prompt can still become
    valid Python, as a character offset; None when there is none (a prompt cut mid-string)."""
    starts = [0] if prompt and not prompt[0].isspace() else []
    at = prompt.find("\n")
    while at != -1:
        nxt = at + 1
        if nxt < len(prompt) and not prompt[nxt].isspace() and prompt[nxt] != "#":
            starts.append(nxt)
        at = prompt.find("\n", nxt)
    for start in starts[-20:]:
        if viable(prompt[start:]):
            return start
    return None


def viable(block: str) -> bool:
    """Whether ``block`` (whole lines) parses or can still become valid Python by adding lines:
    it compiles, or compiles once an indented body follows its last line, or ends inside an
    open bracket, string or backslash continuation."""
    for tail in ("", _body_after(block)):
        try:
            compile(block + tail, "<block>", "exec", dont_inherit=True)
            return True
        except (SyntaxError, ValueError):
            continue
    opened: list[str] = []
    try:
        for tok in tokenize.generate_tokens(io.StringIO(block).readline):
            if tok.type == tokenize.ERRORTOKEN and not tok.string.isspace():
                return False  # a character no Python token holds
            if tok.type == tokenize.OP and tok.string in "([{":
                opened.append(_CLOSE[tok.string])
            elif tok.type == tokenize.OP and tok.string in ")]}" and (
                    not opened or opened.pop() != tok.string):
                return False  # a bracket closed that was never opened
    except tokenize.TokenError as exc:
        if "string" in str(exc):
            return True  # EOF inside a string: any text may follow
        # EOF inside brackets or after a backslash: viable when closing them can parse
        closers = "".join(reversed(opened))
        stem = block.rstrip("\n")
        stem = stem[:-1] if stem.endswith("\\") else stem
        for tail in (closers, " x" + closers, " x:" + closers):
            try:
                compile(stem + tail + "\n", "<block>", "exec", dont_inherit=True)
                return True
            except (SyntaxError, ValueError):
                continue
        return False
    except (SyntaxError, ValueError):
        return False
    return False


_CLOSE = {"(": ")", "[": "]", "{": "}"}


def _body_after(block: str) -> str:
    lines = block.rstrip("\n").split("\n")
    last = lines[-1] if lines else ""
    indent = last[: len(last) - len(last.lstrip())]
    return ("\n" if not block.endswith("\n") else "") + indent + "    pass\n"


def _sample_block(module: torch.jit.ScriptModule, context: int, device: str, prompt: str,
                  max_new_bytes: int, temperature: float, seed: int) -> str:
    """Sample line by line, keeping only lines after which the prompt's block can still parse."""
    gen = torch.Generator(device=device).manual_seed(seed)
    start = block_start(prompt)
    head = prompt[start:] if start is not None else None
    if not prompt.endswith("\n") and prompt:
        head = None  # mid-line prompts: lines are not whole; sample without the check
    base = list(prompt.encode("utf-8"))
    done: list[int] = []  # accepted bytes of the completion
    line: list[int] = []
    tries = spent = 0
    while len(done) + len(line) < max_new_bytes and spent < DRAW_FACTOR * max_new_bytes:
        spent += 1
        nxt = _next(module, (base + done + line)[-context:] or [ord("\n")], device,
                    temperature, gen)
        line.append(nxt)
        if nxt != ord("\n"):
            continue
        text = bytes(line).decode("utf-8", errors="replace")
        if text.strip() and not text[0].isspace() and not text.startswith("#"):
            break  # back at the top level: the block is over
        if head is None or viable(head + bytes(done + line).decode("utf-8", errors="replace")):
            done += line
            line, tries = [], 0
            continue
        tries += 1
        line = []
        if tries >= LINE_TRIES or temperature == 0:
            break
    else:
        if len(done) + len(line) >= max_new_bytes:
            done += line  # the byte budget ran out inside a line: the caller drops it
    return bytes(done).decode("utf-8", errors="replace")


def _sample_expr(module: torch.jit.ScriptModule, context: int, device: str, prompt: str,
                 max_new_bytes: int, temperature: float, seed: int, names: tuple[str, ...]) -> str:
    """Sample one expression byte by byte, masking every byte the grammar cannot continue with."""
    gen = torch.Generator(device=device).manual_seed(seed)
    base = list(prompt.encode("utf-8"))
    text, best = "", ""
    while len(text) < max_new_bytes:
        logits = _logits(module, torch.tensor([(base + list(text.encode()))[-context:]
                                               or [ord("\n")]], dtype=torch.long, device=device))
        if temperature == 0:
            order = torch.argsort(logits.float(), descending=True).tolist()
        else:  # the order in which draws without replacement would come: one call, not 256
            probs = torch.softmax(logits.float() / temperature, dim=-1).clamp_min(1e-30)
            order = torch.multinomial(probs, 256, replacement=False, generator=gen).tolist()
        chosen = None
        for nxt in order:
            if nxt == ord("\n"):
                if pyexpr.whole(text, names):
                    return text  # the natural end of the statement
                continue
            if nxt in pyexpr.ALLOWED and pyexpr.viable(text + chr(nxt), names):
                chosen = chr(nxt)
                break
        if chosen is None:
            break  # nothing can follow (every byte the model gives weight to is out)
        text += chosen
        if pyexpr.whole(text, names):
            best = text
    return best


@torch.no_grad()
def score(module: torch.jit.ScriptModule, context: int, device: str, prompt: str,
          continuations: list[str]) -> list[float]:
    """The natural-log probability of each continuation after ``prompt`` (summed over its
    bytes). The prompt keeps its last bytes so that prompt and continuation fit the context; a
    continuation of ``context`` bytes or more is scored in pieces of half the context, each
    after everything before it.

    Raises:
        SampleError: a continuation is empty, or the module fails or returns logits of the
            wrong shape.
    """
    head = list(prompt.encode("utf-8")) or [ord("\n")]
    seqs: list[tuple[list[int], int]] = []
    owner: list[int] = []
    for which, cont in enumerate(continuations):
        tail = list(cont.encode("utf-8"))
        if not tail:
            raise SampleError("an empty continuation: there is nothing to score")
        step = len(tail) if len(tail) < context else max(1, context // 2)
        for at in range(0, len(tail), step):
            piece = tail[at : at + step]
            seqs.append(((head + tail[: at + len(piece)])[-context:], len(piece)))
            owner.append(which)
    values: list[float] = []
    for at in range(0, len(seqs), SCORE_BATCH):
        chunk = seqs[at : at + SCORE_BATCH]
        width = max(len(s) for s, _ in chunk)
        idx = torch.tensor([s + [0] * (width - len(s)) for s, _ in chunk], dtype=torch.long,
                           device=device)
        logp = torch.log_softmax(_batch_logits(module, idx).float(), dim=-1)
        for row, (seq, n) in enumerate(chunk):
            positions = torch.arange(len(seq) - n - 1, len(seq) - 1, device=device)
            targets = torch.tensor(seq[len(seq) - n :], dtype=torch.long, device=device)
            value = float(logp[row, positions, targets].sum())
            if math.isnan(value):
                raise SampleError("the model gave NaN log-probabilities")
            values.append(value)
    out = [0.0] * len(continuations)
    for which, value in zip(owner, values, strict=True):
        out[which] += value
    return out


def _batch_logits(module: torch.jit.ScriptModule, idx: torch.Tensor,
                  doing: str = "scoring") -> torch.Tensor:
    try:
        out = module(idx)
    except RuntimeError as exc:
        raise SampleError(f"the model failed while {doing}: {exc}") from None
    if not isinstance(out, torch.Tensor) or out.dim() != 3 or out.shape[:2] != idx.shape \
            or out.shape[2] != 256:
        shape = tuple(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__
        raise SampleError(f"logits of shape {shape}, expected {tuple(idx.shape) + (256,)}")
    return out


def _logits(module: torch.jit.ScriptModule, idx: torch.Tensor) -> torch.Tensor:
    return _batch_logits(module, idx, "sampling")[0, -1]


def _entries(request: object) -> tuple[list[dict], list[dict]]:
    if not isinstance(request, dict) or not ("prompts" in request or "scores" in request):
        raise SampleError("the request needs 'prompts' or 'scores': lists of objects")
    lists = request.get("prompts", []), request.get("scores", [])
    for key, entries in zip(("prompts", "scores"), lists, strict=True):
        if not isinstance(entries, list) or not all(isinstance(e, dict) for e in entries):
            raise SampleError(f"the request's {key!r} must be a list of objects")
    return lists


def _one(module: torch.jit.ScriptModule, context: int, device: str, p: dict) -> dict:
    try:
        text = sample(module, context, device, str(p["prompt"]), int(p["max_new_bytes"]),
                      float(p.get("temperature", 0.8)), int(p.get("seed", 0)), p.get("stop"),
                      p.get("constraint"), _names(p.get("names", [])))
    except (SampleError, ValueError, TypeError, KeyError) as exc:
        return {"error": f"{type(exc).__name__}: {exc}"}
    return {"text": text}


def _names(value: object) -> tuple[str, ...]:
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise TypeError("'names' must be a list of strings")
    return tuple(value)


def _score_one(module: torch.jit.ScriptModule, context: int, device: str, s: dict) -> dict:
    try:
        conts = s["continuations"]
        if not isinstance(conts, list) or not all(isinstance(c, str) for c in conts):
            raise TypeError("'continuations' must be a list of strings")
        return {"logprobs": score(module, context, device, str(s["prompt"]), conts)}
    except (SampleError, ValueError, TypeError, KeyError) as exc:
        return {"error": f"{type(exc).__name__}: {exc}"}


def main() -> int:
    raw = os.environ.get("SELFPROG_CODELM_REQUEST")
    try:
        prompts, scores = _entries(json.loads(raw if raw is not None else sys.stdin.read()))
        module, context = load(Path(os.environ.get("SELFPROG_CODELM_MODEL", "/model")), "cpu")
    except (SampleError, json.JSONDecodeError) as exc:
        print(f"sandbox.codelm: {exc}", file=sys.stderr)
        return 2
    completions = [_one(module, context, "cpu", p) for p in prompts]
    scored = [_score_one(module, context, "cpu", s) for s in scores]
    sys.stdout.write(json.dumps({"completions": completions, "scores": scored}) + "\n")
    sys.stdout.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main())

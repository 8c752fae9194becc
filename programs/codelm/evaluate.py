"""Trusted evaluator of codelm: scores the exported model on held-out Python it never saw.

It never imports the variant's code and never loads its model: the TorchScript module the train
stage exported (model.pt) is code, so it runs in its own container behind serve.py (split
evaluation, ``sandbox.remote``), one fresh worker per call, with no held-out data, nothing
writable that lasts and no network. This process reads only ``context`` from model.json, sends
byte windows, gets logits back as plain arrays, and measures on a fixed prefix of the held-out
corpus:

  val_bpb          bits per byte of next-byte prediction (the metric; lower is better)
  next_byte_acc    how often the most likely next byte is the right one
  line_exact       share of held-out lines completed exactly by greedy decoding, given the code
                   above them and their indentation
  line_prefix_acc  mean share of each such line typed right before the first wrong byte
  params           parameters of the module, as the model server counted them (telemetry)
  eval_peak_rss_mb, eval_s   cost of this evaluation
  train_bytes_per_s          as the train stage reported it (telemetry, not verified)

The module is untrusted code, so two rules keep it from forging its score. Every call is a fresh
worker that loads it from the same bytes: nothing it remembers from one input can help it on the
next. And every scored batch is checked for reading ahead: each window is run again with the
bytes after a cut replaced by other real held-out text, at a cut drawn from the operating
system's randomness (so the module cannot know where, nor tell a check call from a scoring call),
and the normalised log-probabilities up to the cut must not move by more than a fixed tolerance.
A module whose prediction of byte t looks at byte t or later fails the evaluation, however large
or small it makes its logits.
"""

from __future__ import annotations

import json
import lzma
import math
import os
import resource
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F

try:
    from sandbox import remote, report
except ModuleNotFoundError:  # run bare from a checkout where selfprog is not installed
    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
    from sandbox import remote, report

EVAL_BYTES = 98_304
"""Held-out bytes scored for val_bpb: fixed, so every variant is judged on the same text."""
N_LINES = 64
"""Held-out lines in the completion test."""
MAX_LINE = 48
"""Longest line body (after its indentation) in the completion test, in bytes."""
BATCH = 16
MAX_CONTEXT = 4096
CAUSAL_ATOL = 1e-3
"""How far a log-probability before the cut may move when the text after it changes (float noise
only). Fixed: log_softmax is invariant to the logits' scale, so a model cannot widen it."""
LOGP_FLOOR = -100.0
"""Log-probabilities are compared above this floor (float noise grows with their size)."""


def fail(kind: str, message: str) -> None:
    report.error(kind, message)
    sys.exit(1)


class Model:
    """The model server: each call sends byte windows and gets their logits back as an array."""

    def __init__(self) -> None:
        self.remote = remote.remote_model()
        self.params = 0

    def __call__(self, idx: torch.Tensor, last: bool = False) -> torch.Tensor:
        shape = (idx.shape[0], 256) if last else (*idx.shape, 256)
        try:
            answer = self.remote(x=idx.numpy().astype("int64"), last=last)
            logits = remote.expect(answer, "y", shape)
        except remote.RemoteError as exc:
            fail("model", f"forward failed on input {tuple(idx.shape)}: {exc}")
        self.params = remote.count(answer)
        return torch.from_numpy(logits).float()


def load_model(out: Path) -> tuple[Model, int]:
    try:
        meta = json.loads((out / "model.json").read_text())
    except (OSError, ValueError) as exc:
        fail("artifact", f"model.json unreadable: {exc}")
    context = meta.get("context") if isinstance(meta, dict) else None
    if not isinstance(context, int) or isinstance(context, bool) or not 0 < context <= MAX_CONTEXT:
        fail("artifact", f"model.json: context must be an integer in 1..{MAX_CONTEXT}: {context!r}")
    return Model(), context


def logits_of(module: Model, idx: torch.Tensor, last: bool = False) -> torch.Tensor:
    return module(idx, last)


def score_bytes(module, context: int, text: torch.Tensor) -> tuple[float, float]:
    """(bits per byte, top-1 accuracy) over windows of ``context`` that tile ``text``.

    Each window predicts its bytes from the ones before it in the same window, so a longer
    context is rewarded exactly as much as it helps. The last partial window is left out.
    """
    starts = list(range(0, len(text) - context, context))
    nats, hits, count = 0.0, 0, 0
    for i in range(0, len(starts), BATCH):
        chunk = torch.stack([text[s : s + context + 1] for s in starts[i : i + BATCH]]).long()
        logits = logits_of(module, chunk[:, :-1])
        check_causal(module, logits, chunk[:, :-1], text, [s + len(text) // 2 for s in
                                                          starts[i : i + BATCH]])
        target = chunk[:, 1:]
        nats += F.cross_entropy(logits.reshape(-1, 256), target.reshape(-1), reduction="sum").item()
        hits += int((logits.argmax(-1) == target).sum())
        count += target.numel()
    return nats / count / math.log(2), hits / count


def check_causal(module: Model, logits: torch.Tensor, idx: torch.Tensor, text: torch.Tensor,
                 donors: list[int]) -> None:
    """Fail unless the log-probabilities up to a secret cut per row ignore every byte after it.

    The bytes after the cut are replaced by real held-out text (from elsewhere in the corpus), so
    the check call looks like any scoring call.
    """
    rows, width = idx.shape
    if width < 2:
        return
    secret = torch.Generator().manual_seed(int.from_bytes(os.urandom(8), "little"))
    cuts = torch.randint(0, width - 1, (rows,), generator=secret)
    span = len(text) - width
    other = torch.stack([text[d % span : d % span + width] for d in donors]).long()
    after = torch.arange(width)[None, :] > cuts[:, None]
    changed = torch.where(after, other, idx)
    again = logits_of(module, changed)
    before = F.log_softmax(logits, -1).clamp_min(LOGP_FLOOR)
    now = F.log_softmax(again, -1).clamp_min(LOGP_FLOOR)
    moved = (now - before).abs().masked_fill(after[..., None], 0.0).amax()
    if not moved <= CAUSAL_ATOL:
        fail("model", "reads ahead: its predictions of earlier bytes changed when only later "
             f"bytes did (log-probabilities moved by {float(moved):.3g}); a language model may "
             "only look back")


def pick_lines(raw: bytes, context: int) -> list[tuple[bytes, bytes]]:
    """(prompt, line body) pairs: code above the line plus its indentation, then the line."""
    candidates, pos = [], 0
    for line in raw.split(b"\n"):
        body = line.lstrip(b" ")
        indent = len(line) - len(body)
        if pos >= context and 8 <= len(body) <= MAX_LINE and not body.startswith(b"#"):
            candidates.append((raw[pos + indent - context : pos + indent], body))
        pos += len(line) + 1
    step = max(1, len(candidates) // N_LINES)
    return candidates[::step][:N_LINES]


def complete_lines(module, context: int, pairs: list[tuple[bytes, bytes]]) -> tuple[float, float]:
    """Greedy-decode every line at once; return (exact share, mean correct-prefix share)."""
    window = torch.tensor([list(p) for p, _ in pairs], dtype=torch.long)
    longest = max(len(b) for _, b in pairs)
    produced = []
    for _ in range(longest):
        nxt = logits_of(module, window, last=True).argmax(-1)
        produced.append(nxt)
        window = torch.cat([window[:, 1:], nxt[:, None]], dim=1)
    guesses = torch.stack(produced, dim=1).tolist()
    exact, prefix = 0, 0.0
    for (_, body), guess in zip(pairs, guesses, strict=True):
        right = 0
        while right < len(body) and guess[right] == body[right]:
            right += 1
        exact += right == len(body)
        prefix += right / len(body)
    return exact / len(pairs), prefix / len(pairs)


def main() -> None:
    start = time.monotonic()
    out = Path(os.environ.get("SELFPROG_OUT", "out"))
    data = Path(os.environ.get("SELFPROG_DATA", "data/heldout"))
    torch.manual_seed(0)
    module, context = load_model(out)
    raw = lzma.decompress((data / "corpus.txt.xz").read_bytes())[:EVAL_BYTES]
    text = torch.frombuffer(bytearray(raw), dtype=torch.uint8)
    with torch.no_grad():
        bpb, acc = score_bytes(module, context, text)
        exact, prefix = complete_lines(module, context, pick_lines(raw, context))
    if not math.isfinite(bpb):
        fail("metric", f"val_bpb is {bpb}")
    try:
        claimed = float(json.loads((out / "model.json").read_text()).get("train_bytes_per_s", 0))
    except (TypeError, ValueError):
        claimed = 0.0
    report.result(
        val_bpb=bpb, next_byte_acc=acc, line_exact=exact, line_prefix_acc=prefix,
        params=module.params,
        train_bytes_per_s=claimed if math.isfinite(claimed) else 0.0,
        eval_peak_rss_mb=resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        eval_s=time.monotonic() - start,
    )


if __name__ == "__main__":
    main()

"""Trusted evaluator of coder: held-out bits per byte and pass@1 on held-out Python problems.

The variant's export answers from its own container (``serve.py``, split evaluation through
``sandbox.remote``); this process holds the held-out text and the problems' tests and scores:

  val_bpb      bits per byte of the held-out text (the metric; lower is better): the model's
               total negative log-likelihood of the text's tokens, in bits, over the text's
               UTF-8 bytes, so models with different tokenizers are judged on the same scale
  pass_at_1    share of the held-out problems whose greedy completion passes its tests
  tokens_per_byte, params, context, eval_s, eval_peak_rss_mb, train_tokens_per_s (telemetry)

Rules that keep the score honest (the weights and the tokenizer are the variant's data):
* The tokenization must be lossless: the ids the server gives for a text must decode to exactly
  that text (a tokenizer that drops or folds characters would shrink the NLL it is charged).
* Log-probabilities come from the trusted server code's log_softmax over the model's logits.
  Each scored batch is run again with the tokens after a cut drawn from ``os.urandom`` replaced
  by other held-out tokens; a log-probability before the cut that moves means the model reads
  ahead (a config asking for bidirectional attention), and the evaluation fails.
* A completion runs in its own process under rlimits (CPU, memory, file size, open files), a
  wall-clock timeout, with Landlock allowing reads of the Python install and a fresh temporary
  folder and writes only to that folder; it inherits no descriptor but stdin/stdout/stderr
  (not the protocol channel) and no environment. Only its exit status is read: 0 is a pass.
"""

from __future__ import annotations

import json
import lzma
import math
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

try:
    from sandbox import landlock, remote, report
except ModuleNotFoundError:  # run bare from a checkout where selfprog is not installed
    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
    from sandbox import landlock, remote, report

EVAL_BYTES = 16_384
"""Held-out bytes scored for val_bpb: fixed, so every variant is judged on the same text."""
WINDOW = 128
"""Tokens per scored window (or the model's context when smaller)."""
CAUSAL_ATOL = 1e-3
MAX_NEW_BYTES = 160
CONNECT_S = 240.0
REQUEST_S = 300.0
"""One request: the generate request decodes all problems (serve.py allows the same)."""
RUN_TIMEOUT_S = 10.0
RUN_CPU_S = 5
RUN_MEMORY = 512 * 1024**2


def fail(kind: str, message: str) -> None:
    report.error(kind, message)
    sys.exit(1)


class Server:
    """The model server: one fresh worker per call."""

    def __init__(self) -> None:
        # the server imports torch and transformers before it listens: on a loaded machine
        # that is past sandbox.remote's default 30 s
        self.remote = remote.remote_model(connect_s=CONNECT_S, timeout_s=REQUEST_S)
        self.params = 0
        self.context = 0

    def __call__(self, **request: object) -> dict:
        try:
            answer = self.remote(**request)
        except remote.RemoteError as exc:
            fail("model", f"{request.get('op')} failed: {exc}")
        if "error" in answer:
            fail("model", f"{request.get('op')} failed: {str(answer['error'])[:500]}")
        self.params = remote.count(answer)
        self.context = remote.count(answer, "context")
        return answer


def tokens_of(server: Server, text: str) -> np.ndarray:
    """The server's ids of ``text``, checked to decode back to exactly ``text``."""
    answer = server(op="encode", text=text)
    ids = answer.get("ids")
    if not isinstance(ids, np.ndarray) or ids.ndim != 1 or ids.dtype.kind not in "iu" or \
            not len(ids):
        fail("model", "encode answered no 1-d integer array of ids")
    if answer.get("text") != text:
        fail("model", "the tokenizer is not lossless: the ids of the held-out text decode to "
             "other text, so their likelihood is not the text's")
    return ids.astype("int64")


def logprobs(server: Server, x: np.ndarray) -> np.ndarray:
    y = remote.expect(server(op="logprobs", x=x), "y", (x.shape[0], x.shape[1] - 1))
    if (y > 1e-4).any():
        fail("model", "log-probabilities above 0")
    return y.astype("float64")


def score_text(server: Server, ids: np.ndarray, nbytes: int) -> float:
    """Bits per byte: windows of ``WINDOW`` tokens tile the ids; the first token of each
    window (no context) is scored by the previous window's last position (windows overlap by
    one); the very first token, which has no context, is charged a fixed 32 bits.

    Every window and its read-ahead check (:func:`with_cuts`) go in one request, shuffled
    together, so a call cannot tell which rows are checks."""
    width = min(WINDOW, server.context or WINDOW, len(ids))
    starts = list(range(0, len(ids) - 1, width - 1))
    rows = [ids[s : s + width] for s in starts]
    # the last window may be short: padded with the text's start, its tail not counted
    x = np.stack([np.concatenate([r, ids[: width - len(r)]]) for r in rows])
    secret = np.random.default_rng(int.from_bytes(os.urandom(8), "little"))
    changed, cuts = with_cuts(x, ids, secret)
    both = np.concatenate([x, changed])
    order = secret.permutation(len(both))
    y = np.empty((len(both), width - 1))
    y[order] = logprobs(server, both[order])
    y, again = y[: len(x)], y[len(x) :]
    for n in range(len(x)):
        moved = np.abs(again[n, : cuts[n]] - y[n, : cuts[n]]).max(initial=0.0)
        if not moved <= CAUSAL_ATOL:
            fail("model", "reads ahead: its log-probabilities of earlier tokens changed when "
                 f"only later tokens did (by {moved:.3g}); a language model may only look back")
    total = -sum(float(y[n, : len(r) - 1].sum()) for n, r in enumerate(rows))
    return (total / math.log(2) + 32.0) / nbytes


def with_cuts(x: np.ndarray, ids: np.ndarray,
              secret: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """``x`` with every row's tokens after a secret cut replaced by other held-out tokens."""
    rows, width = x.shape
    cuts = secret.integers(1, max(2, width - 1), size=rows)
    donors = secret.integers(0, max(1, len(ids) - width), size=rows)
    changed = x.copy()
    for n in range(rows):
        changed[n, cuts[n] + 1 :] = ids[donors[n] : donors[n] + width - cuts[n] - 1]
    return changed, cuts


def _limit(workdir: str) -> None:  # runs in the child between fork and exec
    os.setsid()
    resource.setrlimit(resource.RLIMIT_CPU, (RUN_CPU_S, RUN_CPU_S))
    resource.setrlimit(resource.RLIMIT_AS, (RUN_MEMORY, RUN_MEMORY))
    resource.setrlimit(resource.RLIMIT_FSIZE, (1024**2, 1024**2))
    resource.setrlimit(resource.RLIMIT_NOFILE, (64, 64))
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    read = sorted({sys.prefix, sys.base_prefix, sys.exec_prefix, "/usr", "/lib", "/lib64",
                   "/etc/ld.so.cache", "/dev/null", "/dev/urandom", "/proc/self"})
    read = [p for p in read if os.path.exists(p)]
    landlock.restrict(read=read, write=[workdir])


def run_candidate(source: str) -> bool:
    """Whether ``source`` (completion + tests) exits 0 in its own limited, Landlocked process."""
    workdir = tempfile.mkdtemp(prefix="coder-run-")
    try:
        os.chmod(workdir, 0o700)
        path = Path(workdir, "candidate.py")
        path.write_text(source)
        try:
            done = subprocess.run(
                [sys.executable, "-I", "-S", "-B", str(path)], cwd=workdir, env={},
                stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                timeout=RUN_TIMEOUT_S, close_fds=True, preexec_fn=lambda: _limit(workdir))
        except subprocess.TimeoutExpired:
            return False
        return done.returncode == 0
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


def pass_at_1(server: Server, problems: list[dict]) -> float:
    prompts = [p["prompt"] for p in problems]
    texts = server(op="generate", prompts=prompts, max_new_bytes=MAX_NEW_BYTES).get("texts")
    if not isinstance(texts, list) or len(texts) != len(prompts) or \
            not all(isinstance(t, str) for t in texts):
        fail("model", "generate answered no list of texts, one per prompt")
    passed = sum(run_candidate(p["prompt"] + t + "\n\n" + p["tests"])
                 for p, t in zip(problems, texts, strict=True))
    return passed / len(problems)


def main() -> None:
    start = time.monotonic()
    out = Path(os.environ.get("SELFPROG_OUT", "out"))
    data = Path(os.environ.get("SELFPROG_DATA", "data/heldout"))
    raw = lzma.decompress((data / "corpus.txt.xz").read_bytes())[:EVAL_BYTES]
    text = raw.decode("utf-8", errors="ignore")
    problems = json.loads((data / "problems.json").read_text())["problems"]
    server = Server()
    ids = tokens_of(server, text)
    bpb = score_text(server, ids, len(text.encode()))
    if not math.isfinite(bpb):
        fail("metric", f"val_bpb is {bpb}")
    passed = pass_at_1(server, problems)
    try:
        claimed = float(json.loads((out / "model.json").read_text()).get("train_tokens_per_s", 0))
    except (OSError, TypeError, ValueError, AttributeError):
        claimed = 0.0
    report.result(
        val_bpb=bpb, pass_at_1=passed, tokens_per_byte=len(ids) / len(text.encode()),
        params=server.params, context=server.context,
        train_tokens_per_s=claimed if math.isfinite(claimed) else 0.0,
        eval_peak_rss_mb=resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        eval_s=time.monotonic() - start,
    )


if __name__ == "__main__":
    main()

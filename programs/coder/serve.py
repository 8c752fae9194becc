"""Model side of coder's split evaluation (trusted, never editable): ``python -m sandbox.serve``.

Serves the variant's export (``$SELFPROG_OUT``: safetensors, config.json, tokenizer.json) from its
own container, one fresh, Landlock-restricted worker per request. The export is checked and loaded
as data only (``sandbox.hfexport``: no pickle, no remote code, the tokenizer read by ``tokenizers``
from its JSON), so this file is the only code that runs here; the weights decide the numbers.

Requests (``op``):
  encode    {"text": str}                  -> {"ids": int64[n], "text": decode(ids)}
  logprobs  {"x": int64[B, T]}             -> {"y": float32[B, T-1]}: log p(x[:, t+1] | x[:, :t+1])
  generate  {"prompts": [str], "max_new_bytes": int}
                                           -> {"texts": [str]}: greedy, python-block constrained
A request is one fresh worker that loads the export again, so the evaluator asks few, large ones.
Every answer also carries ``params`` and ``context`` (tokens).
"""

import os
import tempfile
from pathlib import Path

import torch  # here, in the supervisor: every worker forks with it already loaded
import transformers  # noqa: F401  (the same: imported once, not per request)

from sandbox import remote
from sandbox.hfexport import load
from sandbox.hfsample import HFSampler

OUT = Path(os.environ.get("SELFPROG_OUT", "/out"))
# transformers asks for a temporary folder while loading; a worker may write nowhere, so the
# answer ("/tmp", wiped after every request) is found here, before the workers fork
tempfile.gettempdir()
# and torch makes its compile cache folder on every model load: an existing one is no write
os.environ.setdefault("TORCHINDUCTOR_CACHE_DIR", tempfile.gettempdir())
MAX_NEW_BYTES = 2048
ROWS = 8


def load_model():
    torch.set_num_threads(max(1, int(os.environ.get("OMP_NUM_THREADS", "1"))))
    loaded = load(OUT, "cuda" if torch.cuda.is_available() else "cpu")
    sampler = HFSampler(loaded)
    params = int(sum(p.numel() for p in loaded.model.parameters()))

    @torch.no_grad()
    def predict(request):
        op = request.get("op")
        answer = {"params": params, "context": loaded.context}
        if op == "encode" and isinstance(request.get("text"), str):
            ids = sampler.encode(request["text"])
            answer["ids"] = torch.tensor(ids, dtype=torch.long).numpy()
            answer["text"] = sampler.decode(ids)
        elif op == "logprobs" and hasattr(request.get("x"), "dtype"):
            x = torch.from_numpy(request["x"]).long()
            if x.dim() != 2 or x.shape[1] < 2 or x.shape[1] > loaded.context:
                raise ValueError(f"x must be [B, 2..{loaded.context}], got {tuple(x.shape)}")
            rows = []
            for chunk in x.split(ROWS):  # a big vocabulary's logits stay a few rows at a time
                chunk = chunk.to(loaded.device)
                logits = loaded.model(input_ids=chunk).logits.float()
                rows.append(torch.log_softmax(logits[:, :-1], -1).gather(
                    -1, chunk[:, 1:, None])[..., 0].cpu())
            answer["y"] = torch.cat(rows).numpy()
        elif op == "generate" and isinstance(request.get("prompts"), list):
            budget = min(int(request.get("max_new_bytes", 512)), MAX_NEW_BYTES)
            answer["texts"] = [sampler.complete(str(p), budget, 0.0, 0, None, "python-block")
                               for p in request["prompts"]]
        else:
            raise ValueError(f"unknown or malformed request {op!r}")
        return answer

    return predict


remote.serve(load_model, request_s=300.0)  # evaluate.py's REQUEST_S

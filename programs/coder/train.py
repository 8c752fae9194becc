"""coder: fine-tune a pretrained causal code LM on Python source, and export it as data.

This is the editable program. The base model is given, not written here: `BASE_MODEL` names a
folder under the train data (`data/train/base`, made by `tools/coder_base.py`), an absolute
path, or a hub id already in the local Hugging Face cache. What this file decides is what the
fine-tune makes of it: capacity (which blocks train in full, the rank of the low-rank adapters
added to every projection, the context), architecture the export can carry (blocks added on top,
copies of the last one whose output starts at zero), and learning dynamics (optimizer, schedule,
batch). The trusted evaluate.py never imports this file: the model leaves as safetensors +
config.json + tokenizer.json (adapters merged into the weights), never a pickle, never code.

Environment (from the harness, or set by hand to run it bare):
  SELFPROG_DATA           folder with corpus.txt.xz (train text) and the base model
  SELFPROG_OUT            where the export goes
  SELFPROG_TIME_BUDGET_S  seconds of compute for fine-tuning and export (loading the base and
                          tokenizing the corpus come before it and are not counted)
  SELFPROG_SEED           seed of the adapters' weights and the batch order
"""

from __future__ import annotations

import copy
import json
import lzma
import math
import os
import shutil
import sys
import time
from pathlib import Path

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # idle threads sleep: CPU time is work done
os.environ.setdefault("HF_HUB_OFFLINE", "1")  # no hub from a sandbox: the base is local
import torch  # noqa: E402
import torch.nn as nn  # noqa: E402
import torch.nn.functional as F  # noqa: E402

try:
    from sandbox import report
except ModuleNotFoundError:  # run bare from a checkout where selfprog is not installed
    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
    from sandbox import report

BASE_MODEL = "base"  # a folder in the train data, an absolute path, or a cached hub id

# --- search space: capacity, architecture, learning dynamics -------------------------------------
TRAIN_BLOCKS = "top"  # search: choice[none, top, all]
LORA_RANK = 8  # search: choice[0, 4, 8, 16, 32]
LORA_ALPHA = 16  # search: choice[4, 8, 16, 32, 64]
CONTEXT = 128  # search: choice[64, 128, 256, 512]
EXTRA_BLOCKS = 0  # search: int[0, 2]
OPTIMIZER = "adamw"  # search: choice[adamw, sgd]
LEARNING_RATE = 1e-3  # search: log[1e-5, 1e-2]
WEIGHT_DECAY = 0.0  # search: float[0, 0.1]
BATCH_SIZE = 8  # search: choice[2, 4, 8, 16]
WARMUP_FRAC = 0.05  # search: float[0, 0.2]
LR_SCHEDULE = "cosine"  # search: choice[constant, cosine, linear]
GRAD_CLIP = 1.0  # search: float[0.1, 5.0]
# --------------------------------------------------------------------------------------------------

EXPORT_RESERVE_S = 0.15  # fraction of the budget kept for merging and saving
TRAIN_BYTES = 1_000_000  # of the corpus, tokenized once before training starts
EXPORT_FILES = ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json")


class LoRA(nn.Module):
    """A frozen projection plus a trainable low-rank update, B @ A, that starts at zero.

    Works on nn.Linear (weight: out x in) and GPT-2's Conv1D (weight: in x out).
    """

    def __init__(self, base: nn.Module, rank: int, alpha: float):
        super().__init__()
        self.base = base
        self.transposed = not isinstance(base, nn.Linear)
        fan_in, fan_out = base.weight.shape[::-1] if not self.transposed else base.weight.shape
        self.a = nn.Parameter(torch.randn(rank, fan_in) / math.sqrt(fan_in))
        self.b = nn.Parameter(torch.zeros(fan_out, rank))
        self.scale = alpha / rank

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.base(x) + (x @ self.a.t() @ self.b.t()) * self.scale

    def merged(self) -> nn.Module:
        delta = (self.b @ self.a) * self.scale
        with torch.no_grad():
            self.base.weight += delta.t() if self.transposed else delta
        return self.base


def blocks_of(model: nn.Module) -> nn.ModuleList:
    """The model's stack of transformer blocks (GPT-2: transformer.h; Llama/Qwen: model.layers)."""
    for path in ("transformer.h", "model.layers", "gpt_neox.layers", "model.decoder.layers"):
        node: object = model
        for part in path.split("."):
            node = getattr(node, part, None)
        if isinstance(node, nn.ModuleList):
            return node
    raise SystemExit(f"{type(model).__name__}: no transformer block list found")


def add_blocks(model: nn.Module, n: int) -> None:
    """Stack ``n`` copies of the last block on top; their output projections start at zero, so
    each begins as the identity on the residual stream and the export stays a plain config."""
    blocks = blocks_of(model)
    for _ in range(n):
        new = copy.deepcopy(blocks[-1])
        for name, module in new.named_modules():
            if name.endswith(("c_proj", "o_proj", "down_proj", "dense_4h_to_h")) and \
                    hasattr(module, "weight"):
                nn.init.zeros_(module.weight)
        for module in new.modules():
            if hasattr(module, "layer_idx"):
                module.layer_idx = len(blocks)
        blocks.append(new)
    config = model.config
    for key in ("n_layer", "num_hidden_layers"):
        if hasattr(config, key):
            setattr(config, key, len(blocks))
    if isinstance(getattr(config, "layer_types", None), list):
        config.layer_types = config.layer_types + [config.layer_types[-1]] * n


def adapt(model: nn.Module) -> list[tuple[nn.Module, str]]:
    """Freeze the base, unfreeze the blocks TRAIN_BLOCKS names, wrap every projection in a LoRA
    of LORA_RANK. Returns where the adapters sit, for merging."""
    for p in model.parameters():
        p.requires_grad_(False)
    blocks = blocks_of(model)
    chosen = {"none": [], "top": list(blocks)[len(blocks) // 2 :], "all": list(blocks)}
    for block in chosen[TRAIN_BLOCKS]:
        for p in block.parameters():
            p.requires_grad_(True)
    placed = []
    if LORA_RANK > 0:
        for block in blocks:
            for name, module in list(block.named_modules()):
                if module is block or type(module).__name__ not in ("Linear", "Conv1D"):
                    continue
                parent_name, _, attr = name.rpartition(".")
                parent = block.get_submodule(parent_name) if parent_name else block
                setattr(parent, attr, LoRA(module, LORA_RANK, LORA_ALPHA))
                placed.append((parent, attr))
    return placed


def merge(placed: list[tuple[nn.Module, str]]) -> None:
    for parent, attr in placed:
        setattr(parent, attr, getattr(parent, attr).merged())


def resolve_base(data: Path) -> str:
    if os.path.isabs(BASE_MODEL) or (data / BASE_MODEL).is_dir():
        return str(data / BASE_MODEL)  # an absolute path stays itself
    return BASE_MODEL


def load_base(where: str, device: str):
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(where, trust_remote_code=False,
                                                 use_safetensors=True, dtype=torch.float32)
    return model.to(device)


def tokenize(where: str, text: str) -> torch.Tensor:
    from tokenizers import Tokenizer

    if os.path.isdir(where):
        tokenizer = Tokenizer.from_file(os.path.join(where, "tokenizer.json"))
    else:
        from transformers import AutoTokenizer

        tokenizer = AutoTokenizer.from_pretrained(where, trust_remote_code=False).backend_tokenizer
    return torch.tensor(tokenizer.encode(text, add_special_tokens=False).ids, dtype=torch.long)


def make_optimizer(params: list[nn.Parameter]) -> torch.optim.Optimizer:
    if OPTIMIZER == "sgd":
        return torch.optim.SGD(params, lr=LEARNING_RATE, momentum=0.9,
                               weight_decay=WEIGHT_DECAY)
    return torch.optim.AdamW(params, lr=LEARNING_RATE, weight_decay=WEIGHT_DECAY)


def lr_at(progress: float) -> float:
    """Learning rate at a fraction of the time budget (the schedule runs on time, not steps)."""
    if WARMUP_FRAC > 0 and progress < WARMUP_FRAC:
        return LEARNING_RATE * progress / WARMUP_FRAC
    rest = (progress - WARMUP_FRAC) / max(1e-9, 1.0 - WARMUP_FRAC)
    if LR_SCHEDULE == "cosine":
        return LEARNING_RATE * (0.1 + 0.9 * 0.5 * (1.0 + math.cos(math.pi * min(1.0, rest))))
    if LR_SCHEDULE == "linear":
        return LEARNING_RATE * max(0.1, 1.0 - rest)
    return LEARNING_RATE


def cpu_quota() -> float | None:
    """Cores the container may use (its CFS quota, cgroup v2 or v1); None when unlimited."""
    v1 = ("cpu/cpu.cfs_quota_us", "cpu/cpu.cfs_period_us")
    for quota_file, period_file in (("cpu.max", None), v1):
        try:
            text = Path("/sys/fs/cgroup", quota_file).read_text().split()
            if period_file:
                text.append(Path("/sys/fs/cgroup", period_file).read_text().strip())
            quota, period = text[0], text[1]
        except (OSError, IndexError):
            continue
        return None if quota in ("max", "-1") else int(quota) / int(period)
    return None


class Budget:
    """Wall-clock seconds on a GPU; on a CPU, CPU seconds over threads (a loaded machine slows a
    run without shrinking what it computes), capped at 3x in wall-clock time."""

    def __init__(self, seconds: float, device: str, threads: int):
        self.seconds, self.device, self.threads = seconds, device, threads
        self.wall0, self.cpu0 = time.monotonic(), time.process_time()

    def fraction(self) -> float:
        wall = time.monotonic() - self.wall0
        spent = wall if self.device == "cuda" else max(
            (time.process_time() - self.cpu0) / self.threads, wall / 3.0)
        return min(1.0, spent / (self.seconds * (1.0 - EXPORT_RESERVE_S)))


def export(model: nn.Module, base: str, out: Path, meta: dict) -> None:
    """safetensors + config.json + tokenizer files: all the evaluator and the sampler load."""
    model.to("cpu").eval().save_pretrained(str(out), safe_serialization=True)
    if os.path.isdir(base):
        for name in EXPORT_FILES:
            if (Path(base) / name).is_file():
                shutil.copyfile(Path(base) / name, out / name)
    else:
        from transformers import AutoTokenizer

        tok = AutoTokenizer.from_pretrained(base, trust_remote_code=False)
        tok.backend_tokenizer.save(str(out / "tokenizer.json"))
    (out / "model.json").write_text(json.dumps(meta, indent=1))
    for path in out.iterdir():
        path.chmod(0o644)  # the evaluator's model server and the sampler read as another user
        report.artifact(path.name)


def main() -> None:
    seed = int(os.environ.get("SELFPROG_SEED", "0"))
    data = Path(os.environ.get("SELFPROG_DATA", "data/train"))
    out = Path(os.environ.get("SELFPROG_OUT", "out"))
    out.mkdir(parents=True, exist_ok=True)
    device = "cuda" if torch.cuda.is_available() else "cpu"
    quota = cpu_quota()
    threads = max(1, min(os.cpu_count() or 1, math.ceil(quota) if quota else 1 << 16))
    torch.set_num_threads(threads)
    base = resolve_base(data)
    torch.manual_seed(seed)
    model = load_base(base, device)
    limit = getattr(model.config, "max_position_embeddings", None) or getattr(
        model.config, "n_positions", CONTEXT)
    context = min(CONTEXT, int(limit))
    add_blocks(model, EXTRA_BLOCKS)
    placed = adapt(model)
    model.to(device).train()
    raw = lzma.decompress((data / "corpus.txt.xz").read_bytes())[:TRAIN_BYTES]
    tokens = tokenize(base, raw.decode(errors="ignore"))
    # the budget starts here: loading a base costs what its size costs, whatever the variant does
    budget = Budget(float(os.environ.get("SELFPROG_TIME_BUDGET_S", "60")), device, threads)
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = make_optimizer(params)
    n_train = sum(p.numel() for p in params)
    n_params = sum(p.numel() for p in model.parameters())
    report.log(f"coder: {base}, {n_params} parameters ({n_train} training) on {device} "
               f"({threads} threads), {len(tokens)} train tokens, context {context}")

    gen = torch.Generator().manual_seed(seed)
    offsets = torch.arange(context + 1)
    step, seen, loss_ema, t_train = 0, 0, None, time.monotonic()
    use_bf16 = device == "cuda" and torch.cuda.is_bf16_supported()
    while params and (progress := budget.fraction()) < 1.0:
        starts = torch.randint(len(tokens) - context - 1, (BATCH_SIZE,), generator=gen)
        chunk = tokens[starts[:, None] + offsets].to(device, non_blocking=True)
        for group in optimizer.param_groups:
            group["lr"] = lr_at(progress)
        with torch.autocast("cuda", dtype=torch.bfloat16, enabled=use_bf16):
            logits = model(input_ids=chunk[:, :-1]).logits
        loss = F.cross_entropy(logits.float().reshape(-1, logits.shape[-1]),
                               chunk[:, 1:].reshape(-1))
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, GRAD_CLIP)
        optimizer.step()
        step += 1
        seen += chunk[:, :-1].numel()
        value = loss.item()
        loss_ema = value if loss_ema is None else 0.95 * loss_ema + 0.05 * value
        if step % 10 == 0:
            report.progress(step=step, loss=loss_ema, tokens_per_s=seen / (
                time.monotonic() - t_train), lr=optimizer.param_groups[0]["lr"],
                budget_used=progress)
    elapsed = time.monotonic() - t_train
    merge(placed)
    meta = {
        "format": "coder-hf-v1", "base": BASE_MODEL, "context": context, "params": n_params,
        "trained_params": n_train, "device": device, "threads": threads, "steps": step,
        "train_tokens_seen": seen, "train_tokens_per_s": seen / max(elapsed, 1e-9),
        "train_wall_s": elapsed, "train_loss": loss_ema,
        "cuda_peak_bytes": torch.cuda.max_memory_allocated() if device == "cuda" else 0,
    }
    report.progress(step=step, loss=loss_ema or 0.0, tokens_per_s=meta["train_tokens_per_s"])
    export(model, base, out, meta)


if __name__ == "__main__":
    main()

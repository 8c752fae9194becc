"""codelm: a small GPT that models Python source one byte at a time, trained from scratch.

This is the editable program. Everything that decides what the model can become lives here:
architecture (the Block and GPT classes), capacity (the constants below) and learning dynamics
(optimizer, schedule, batch, regularisation). The trusted evaluate.py never imports this file: the
model leaves as TorchScript (model.pt) plus model.json, and is judged on held-out bytes.

Environment (from the harness, or set by hand to run it bare):
  SELFPROG_DATA           folder with corpus.txt.xz (train bytes only)
  SELFPROG_OUT            where model.pt and model.json go
  SELFPROG_TIME_BUDGET_S  seconds of compute for the whole run, export included (see Budget)
  SELFPROG_SEED           seed of the initial weights and the batch order
"""

from __future__ import annotations

import json
import lzma
import math
import os
import sys
import time
from contextlib import nullcontext
from pathlib import Path

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # idle threads sleep: CPU time is work done
import torch  # noqa: E402
import torch.nn as nn  # noqa: E402
import torch.nn.functional as F  # noqa: E402

try:
    from sandbox import report
except ModuleNotFoundError:  # run bare from a checkout where selfprog is not installed
    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
    from sandbox import report

# --- search space: capacity, architecture, learning dynamics -------------------------------------
# Each constant declares the range a mutation may draw from. Any point of this space trains:
# width is N_HEAD * HEAD_DIM, so heads always divide it, and the largest point fits in 4 GiB.
N_LAYER = 2  # search: int[1, 6]
N_HEAD = 2  # search: int[1, 4]
HEAD_DIM = 32  # search: choice[16, 32, 64]
MLP_RATIO = 4  # search: int[1, 4]
CONTEXT = 128  # search: choice[64, 128, 256]
ACTIVATION = "relu"  # search: choice[gelu, relu, silu]
DROPOUT = 0.1  # search: float[0, 0.3]
BATCH_SIZE = 32  # search: choice[8, 16, 32]
LEARNING_RATE = 3e-4  # search: log[1e-4, 3e-2]
WEIGHT_DECAY = 0.1  # search: float[0, 0.3]
BETA2 = 0.99  # search: float[0.9, 0.999]
WARMUP_FRAC = 0.02  # search: float[0, 0.2]
LR_SCHEDULE = "constant"  # search: choice[constant, cosine, linear]
GRAD_CLIP = 1.0  # search: float[0.1, 5.0]
# On a GPU only (a CPU run ignores these; `gpu` in the declaration tells generators to leave them
# alone on a run without GPUs): bf16 autocast of the matmuls, torch.compile of the model ("auto":
# when the budget is long enough to win back the compile time), and a batch that doubles while
# bytes/s still grows by GPU_GROW_GAIN, up to BATCH_SIZE * GPU_BATCH_MAX_SCALE, with the learning
# rate scaled by the square root of the factor when LR_BATCH_SCALING says so.
AUTOCAST_BF16 = True  # search: choice[True, False] gpu
COMPILE = "auto"  # search: choice[auto, on, off] gpu
GPU_BATCH_MAX_SCALE = 32  # search: choice[1, 4, 8, 16, 32, 64] gpu
GPU_GROW_GAIN = 1.25  # search: float[1.05, 2.0] gpu
LR_BATCH_SCALING = "sqrt"  # search: choice[none, sqrt] gpu
# --------------------------------------------------------------------------------------------------

VOCAB = 256  # bytes: no tokenizer to download, and every file is representable
EXPORT_RESERVE_S = 0.1  # fraction of the budget kept for scripting and saving the model
COMPILE_AUTO_MIN_S = 120.0  # "auto" compiles only with at least this budget (compiling takes ~30 s)
GROW_PROBE_STEPS = 8  # steps timed at each batch size while the batch grows
ACTIVATIONS = {"gelu": nn.GELU, "relu": nn.ReLU, "silu": nn.SiLU}


class Block(nn.Module):
    """Pre-norm transformer block: causal self-attention then an MLP, each on a residual path."""

    def __init__(self, width: int, n_head: int, mlp_ratio: int, activation: str, dropout: float):
        super().__init__()
        self.n_head = n_head
        self.ln1 = nn.LayerNorm(width)
        self.qkv = nn.Linear(width, 3 * width)
        self.proj = nn.Linear(width, width)
        self.ln2 = nn.LayerNorm(width)
        self.mlp = nn.Sequential(
            nn.Linear(width, mlp_ratio * width),
            ACTIVATIONS[activation](),
            nn.Linear(mlp_ratio * width, width),
        )
        self.dropout = nn.Dropout(dropout)
        self.attn_dropout = dropout

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, t, c = x.shape
        q, k, v = self.qkv(self.ln1(x)).split(c, dim=2)
        q = q.view(b, t, self.n_head, c // self.n_head).transpose(1, 2)
        k = k.view(b, t, self.n_head, c // self.n_head).transpose(1, 2)
        v = v.view(b, t, self.n_head, c // self.n_head).transpose(1, 2)
        p = self.attn_dropout if self.training else 0.0
        # The fused kernel never materialises the t x t scores: memory stays linear in context.
        y = F.scaled_dot_product_attention(q, k, v, dropout_p=p, is_causal=True)
        y = y.transpose(1, 2).contiguous().view(b, t, c)
        x = x + self.dropout(self.proj(y))
        return x + self.dropout(self.mlp(self.ln2(x)))


class GPT(nn.Module):
    """Byte-level GPT: forward(idx[B, T] int64, T <= context) -> logits[B, T, 256]."""

    def __init__(self, n_layer: int, n_head: int, head_dim: int, mlp_ratio: int, context: int,
                 activation: str, dropout: float):
        super().__init__()
        width = n_head * head_dim
        self.context = context
        self.tok = nn.Embedding(VOCAB, width)
        self.pos = nn.Embedding(context, width)
        self.drop = nn.Dropout(dropout)
        self.blocks = nn.ModuleList(
            [Block(width, n_head, mlp_ratio, activation, dropout) for _ in range(n_layer)]
        )
        self.ln_f = nn.LayerNorm(width)
        self.head = nn.Linear(width, VOCAB, bias=False)
        self.head.weight = self.tok.weight  # tied: fewer parameters to learn in a short budget
        self.apply(self._init)

    @staticmethod
    def _init(module: nn.Module) -> None:
        if isinstance(module, (nn.Linear, nn.Embedding)):
            nn.init.normal_(module.weight, mean=0.0, std=0.02)
        if isinstance(module, nn.Linear) and module.bias is not None:
            nn.init.zeros_(module.bias)

    def forward(self, idx: torch.Tensor) -> torch.Tensor:
        t = idx.size(1)
        pos = torch.arange(t, device=idx.device)
        x = self.drop(self.tok(idx) + self.pos(pos))
        for block in self.blocks:
            x = block(x)
        return self.head(self.ln_f(x))


def build_model() -> GPT:
    return GPT(N_LAYER, N_HEAD, HEAD_DIM, MLP_RATIO, CONTEXT, ACTIVATION, DROPOUT)


def load_bytes(data_dir: Path) -> torch.Tensor:
    raw = lzma.decompress((data_dir / "corpus.txt.xz").read_bytes())
    return torch.frombuffer(bytearray(raw), dtype=torch.uint8)


def make_optimizer(model: nn.Module) -> torch.optim.Optimizer:
    # Decay weight matrices only: pulling norms, biases or positions towards zero only hurts.
    decay = [p for n, p in model.named_parameters() if p.dim() >= 2 and "pos" not in n]
    rest = [p for n, p in model.named_parameters() if p.dim() < 2 or "pos" in n]
    groups = [{"params": decay, "weight_decay": WEIGHT_DECAY},
              {"params": rest, "weight_decay": 0.0}]
    return torch.optim.AdamW(groups, lr=LEARNING_RATE, betas=(0.9, BETA2))


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
    """The training budget, on the clock that makes runs comparable.

    On a GPU: wall-clock seconds. On a CPU: this process's CPU seconds divided by its threads, so
    neighbours on a shared machine slow a run down without shrinking what it may compute (the
    metric then measures the code, not the load). A wall-clock cap of 3x keeps it in its timeout.
    """

    def __init__(self, seconds: float, device: str, threads: int):
        self.seconds, self.device, self.threads = seconds, device, threads
        self.wall0, self.cpu0 = time.monotonic(), time.process_time()

    def spent(self) -> float:
        wall = time.monotonic() - self.wall0
        if self.device == "cuda":
            return wall
        return max((time.process_time() - self.cpu0) / self.threads, wall / 3.0)

    def fraction(self) -> float:
        return min(1.0, self.spent() / (self.seconds * (1.0 - EXPORT_RESERVE_S)))


class Grow:
    """The batch on a GPU: it doubles while bytes/s still grows by GPU_GROW_GAIN, up to
    ``base * max_scale``, measured on the real training steps (a small model leaves a GPU idle at
    the seed's batch: each step costs about the same up to thousands of sequences). It falls back
    to the last batch that trained when a larger one runs out of memory. With ``max_scale`` 1 (a
    CPU) the batch stays ``base``."""

    def __init__(self, base: int, max_scale: int):
        self.base, self.cap = base, base * max(1, max_scale)
        self.batch, self.done = base, max_scale <= 1
        self.best_rate, self.steps, self.t0, self.seen = 0.0, 0, 0.0, 0

    def lr_factor(self) -> float:
        return math.sqrt(self.batch / self.base) if LR_BATCH_SCALING == "sqrt" else 1.0

    def record(self, n_bytes: int) -> None:
        if self.done:
            return
        self.steps += 1
        if self.steps == 2:  # the first step at a size warms up (allocations, kernels)
            torch.cuda.synchronize()
            self.t0, self.seen = time.monotonic(), 0
        elif self.steps > 2:
            self.seen += n_bytes
        if self.steps < GROW_PROBE_STEPS + 2:
            return
        torch.cuda.synchronize()
        rate = self.seen / max(time.monotonic() - self.t0, 1e-9)
        if rate < self.best_rate * GPU_GROW_GAIN or self.batch * 2 > self.cap:
            self.done = True
            if rate < self.best_rate:  # the larger batch was no faster: take the last one back
                self.batch //= 2
        else:
            self.best_rate, self.batch, self.steps = rate, self.batch * 2, 0
        if self.done:
            report.log(f"codelm: batch {self.batch} ({self.batch // self.base}x the seed's)")

    def shrink(self) -> bool:
        """Out of memory at this size: back to the last one, grown no more (False: nothing to
        fall back to)."""
        if self.done or self.batch == self.base:
            return False
        self.batch, self.done = self.batch // 2, True
        return True


def export(model: GPT, out: Path, meta: dict) -> None:
    """Write model.pt (TorchScript, CPU) and model.json: all the evaluator may rely on."""
    model = model.to("cpu").eval()
    torch.jit.script(model).save(str(out / "model.pt"))
    (out / "model.json").write_text(json.dumps(meta, indent=1))
    report.artifact("model.pt")
    report.artifact("model.json")


def main() -> None:
    seed = int(os.environ.get("SELFPROG_SEED", "0"))
    out = Path(os.environ.get("SELFPROG_OUT", "out"))
    out.mkdir(parents=True, exist_ok=True)
    device = "cuda" if torch.cuda.is_available() else "cpu"
    quota = cpu_quota()
    threads = max(1, min(os.cpu_count() or 1, math.ceil(quota) if quota else 1 << 16))
    torch.set_num_threads(threads)
    budget = Budget(float(os.environ.get("SELFPROG_TIME_BUDGET_S", "60")), device, threads)
    data = load_bytes(Path(os.environ.get("SELFPROG_DATA", "data/train")))
    torch.manual_seed(seed)
    if device == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = True

    model = build_model().to(device)
    optimizer = make_optimizer(model)
    n_params = sum(p.numel() for p in model.parameters())
    on_gpu = device == "cuda"
    compiled = on_gpu and (COMPILE == "on" or (COMPILE == "auto"
                                               and budget.seconds >= COMPILE_AUTO_MIN_S))
    forward = torch.compile(model) if compiled else model
    bf16 = on_gpu and AUTOCAST_BF16 and torch.cuda.is_bf16_supported()
    report.log(f"codelm: {n_params} parameters on {device} ({threads} threads), "
               f"{len(data)} train bytes, bf16 {bf16}, compiled {compiled}")

    gen = torch.Generator().manual_seed(seed)
    offsets = torch.arange(CONTEXT + 1)
    grow = Grow(BATCH_SIZE, GPU_BATCH_MAX_SCALE if on_gpu else 1)
    step, seen, loss_ema, t_train = 0, 0, None, time.monotonic()
    while (progress := budget.fraction()) < 1.0:
        batch = grow.batch
        starts = torch.randint(len(data) - CONTEXT - 1, (batch,), generator=gen)
        chunk = data[starts[:, None] + offsets].long().to(device, non_blocking=True)
        x, y = chunk[:, :-1], chunk[:, 1:]
        for group in optimizer.param_groups:
            group["lr"] = lr_at(progress) * grow.lr_factor()
        try:
            with torch.autocast("cuda", dtype=torch.bfloat16) if bf16 else nullcontext():
                logits = forward(x)
                loss = F.cross_entropy(logits.reshape(-1, VOCAB).float(), y.reshape(-1))
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
        except torch.OutOfMemoryError:
            if not grow.shrink():  # the batch that trained before fits again; else a real OOM
                raise
            optimizer.zero_grad(set_to_none=True)
            torch.cuda.empty_cache()
            continue
        torch.nn.utils.clip_grad_norm_(model.parameters(), GRAD_CLIP)
        optimizer.step()
        step += 1
        seen += x.numel()
        value = loss.item()
        grow.record(x.numel())
        loss_ema = value if loss_ema is None else 0.95 * loss_ema + 0.05 * value
        if step % 25 == 0:
            rate = seen / (time.monotonic() - t_train)
            report.progress(step=step, loss=loss_ema, bpb=loss_ema / math.log(2),
                            bytes_per_s=rate, lr=optimizer.param_groups[0]["lr"],
                            budget_used=progress, batch=batch)
    elapsed = time.monotonic() - t_train
    peak = torch.cuda.max_memory_allocated() if device == "cuda" else 0
    meta = {
        "format": "codelm-bytes-v1", "context": CONTEXT, "vocab": VOCAB, "params": n_params,
        "device": device, "threads": threads, "steps": step, "train_bytes_seen": seen,
        "train_bytes_per_s": seen / max(elapsed, 1e-9), "train_wall_s": elapsed,
        "train_loss": loss_ema, "cuda_peak_bytes": peak, "batch": grow.batch,
        "bf16": bf16, "compiled": compiled,
    }
    report.progress(step=step, loss=loss_ema or 0.0, bytes_per_s=meta["train_bytes_per_s"])
    export(model, out, meta)


if __name__ == "__main__":
    main()

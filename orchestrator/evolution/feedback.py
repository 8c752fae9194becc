"""What the loop tells a generator besides the parent's source: the feedback of a run.

An ML engineer deciding on the next change looks at how the current version trained (its loss
curve, its costs), the terms it runs under (the budget and what counts against it, the memory
cap, the noise floor), what was already tried from it and how that went (worse changes
included, so they are not proposed again), and why recent attempts failed (the traceback, not
"exited with code 1"; the rejection reason of an answer that never ran). This module reads those
from the store and the evaluation folders and hands them over as the typed fields of a
``GenerationRequest``; ``generators.prompt`` decides how much of it fits.

Everything read here is what a variant wrote (its progress messages, its log): it is trimmed,
capped and shown to the model as data, never interpreted.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from pathlib import Path

from orchestrator.errors import StoreError
from orchestrator.generators.base import Failure, Profile, RunFacts, Tried
from orchestrator.program import Program
from orchestrator.result import Goal, Score, Status, VariantResult
from orchestrator.runner import cpu_cap
from orchestrator.runs.rows import EvalRow, VariantRecord
from orchestrator.runs.store import Store

FOCI = ("architecture", "capacity", "learning dynamics")
"""What a proposal is asked to change, in turn: the paper's three kinds of self-modification."""
CURVE_POINTS = 8
"""Points of a training curve shown (evenly spaced, the last one always kept)."""
LOG_TAIL_LINES = 15
_READ_CAP = 4 * 1024 * 1024
"""Most bytes read from a variant's events or log (they are capped when written, too)."""


def focus(call_number: int) -> str:
    """The focus of the ``call_number``-th proposal: the three kinds of change in turn."""
    return FOCI[call_number % len(FOCI)]


def run_facts(program: Program, noise: float | None, gpus: int | None = None) -> RunFacts:
    """The training budget, what enforces it, the resources and the noise floor; ``gpus``: the
    GPUs a variant gets (a slot's), when known (else the program's own ``resources.gpus``)."""
    res = program.manifest.resources
    budget = res.budget_s(False)
    cap = cpu_cap(budget, res.cpus)
    counts = (f"wall-clock seconds that train.py measures itself (SELFPROG_TIME_BUDGET_S); the "
              f"sandbox stops TRAIN past {cap:g} CPU-seconds (all cores together) or "
              f"{res.timeout_s:g} s wall-clock, whatever the code does")
    if res.gpu_time_budget_s:
        counts += f"; on a GPU the budget is {res.gpu_time_budget_s:g} s"
    return RunFacts(budget_s=budget, budget_counts=counts, memory_bytes=res.memory_bytes,
                    cpus=res.cpus, gpus=res.gpus if gpus is None else gpus,
                    noise=noise)


def profile(ev: EvalRow | None) -> Profile | None:
    """How the evaluation ``ev`` trained: its curve from ``events.jsonl`` and its costs from
    ``result.json``; None when it has not run (or left nothing readable)."""
    if ev is None or ev.state != "done":
        return None
    curve = _curve(_read_lines(ev.folder / "events.jsonl"))
    result = _result(ev.folder / "result.json")
    metrics: tuple[tuple[str, float], ...] = ()
    train_s = peak = None
    if result is not None:
        metrics = tuple(sorted(result.metrics.items()))
        train = result.stage("train")
        if train is not None:
            train_s, peak = train.duration_s, train.peak_memory_bytes
    if not curve and result is None:
        return None
    return Profile(curve=curve, metrics=metrics, train_s=train_s, peak_memory_bytes=peak,
                   feedback=peer_feedback(ev.folder / "eval.log"))


PEER_FEEDBACK = "[peer feedback, untrusted] "
"""How ``sandbox/peer_eval.py`` marks a peer evaluator's text feedback in ``eval.log``."""


def peer_feedback(path: Path, cap: int = 4096) -> str:
    """A peer evaluator's feedback lines from an EVAL log ('' when none), at most ``cap``
    characters."""
    lines = [_strip_stream(line) for line in _read_lines(path)]
    text = "\n".join(line[len(PEER_FEEDBACK):] for line in lines if line.startswith(PEER_FEEDBACK))
    return text[:cap]


def tried(store: Store, parent_id: str, settled: Mapping[str, VariantRecord], goal: Goal,
          parent_value: float | None, noise: float | None, last: int) -> tuple[Tried, ...]:
    """The changes made from ``parent_id`` (newest ``last``), each with how it did; ``settled``
    holds the variants selection has judged (the others are still running)."""
    out = []
    for child in store.children(parent_id, last):
        out.append(Tried(child.id, child.diff, settled[child.id].variant.value
                         if child.id in settled else None,
                         _outcome(settled.get(child.id), goal, parent_value, noise)))
    return tuple(out)


def failures(store: Store, last: int) -> tuple[Failure, ...]:
    """Recent failed evaluations (with their traceback) and rejected answers (with the reason),
    oldest first, ``last`` of each at most."""
    out = []
    for ev in store.failed_evaluations(last=last):
        diff = _diff(store, ev.variant_id)
        out.append(Failure(ev.variant_id, ev.status.value if ev.status else "?", ev.error or "",
                           diff=diff, log_tail=log_tail(ev)))
    for call in store.rejected_calls(last):
        out.append(Failure(f"answer {call['id']}", "rejected before running",
                           call["rejection"] or "rejected"))
    return tuple(out)


def log_tail(ev: EvalRow, lines: int = LOG_TAIL_LINES) -> str:
    """The end of the log of the stage that failed, from its traceback when it printed one."""
    stage = "eval" if (ev.error or "").startswith("eval") else "train"
    text = _read_lines(ev.folder / f"{stage}.log")
    cleaned = [_strip_stream(line) for line in text]
    start = max((i for i, line in enumerate(cleaned) if line.startswith("Traceback")),
                default=max(0, len(cleaned) - lines))
    tail = cleaned[start:][-lines:]
    return "\n".join(tail)


# --- details ---------------------------------------------------------------------------------
def _outcome(record: VariantRecord | None, goal: Goal, parent_value: float | None,
             noise: float | None) -> str:
    if record is None:
        return "running"
    failed = [e for e in record.evaluations if e.status is not None and e.status is not Status.OK]
    if failed:
        return str(failed[0].status)
    child = record.variant
    if child.value is None:
        return "running"
    if parent_value is None:
        return "ok"
    if noise is not None and abs(child.value - parent_value) <= noise:
        return "within noise"
    return "better" if Score(child.value, goal) > Score(parent_value, goal) else "worse"


def _diff(store: Store, variant_id: str) -> str:
    try:
        return store.variant(variant_id).diff
    except StoreError:  # a variant gone: the failure is still worth telling
        return ""


def _read_lines(path: Path) -> list[str]:
    try:
        with path.open("rb") as f:
            data = f.read(_READ_CAP)
    except OSError:
        return []
    return data.decode("utf-8", "replace").splitlines()


def _strip_stream(line: str) -> str:
    for prefix in ("[stderr] ", "[stdout] ", "[harness] "):
        if line.startswith(prefix):
            return line[len(prefix):]
    return line


def _curve(lines: Iterable[str]) -> tuple[tuple[int, tuple[tuple[str, float], ...]], ...]:
    points = []
    for line in lines:
        try:
            message = json.loads(line)
        except ValueError:
            continue
        if not isinstance(message, dict) or message.get("type") != "progress":
            continue
        step, metrics = message.get("step"), message.get("metrics")
        if not isinstance(step, int) or not isinstance(metrics, dict):
            continue
        values = tuple(sorted((str(k)[:40], float(v)) for k, v in metrics.items()
                              if isinstance(v, (int, float)) and not isinstance(v, bool)))
        points.append((step, values[:8]))
    if len(points) <= CURVE_POINTS:
        return tuple(points)
    stride = (len(points) - 1) / (CURVE_POINTS - 1)
    return tuple(points[round(i * stride)] for i in range(CURVE_POINTS))


def _result(path: Path) -> VariantResult | None:
    try:
        return VariantResult.model_validate_json(path.read_bytes()[:_READ_CAP])
    except (OSError, ValueError):
        return None

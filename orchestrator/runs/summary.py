"""What a run leaves for people and CI: counts, the best variant, summary.json/.md, best.diff.

Everything here reads the store alone, so ``selfprog best`` and ``selfprog report`` work on a
finished, resumed or killed run alike.
"""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path
from typing import Any

from orchestrator.peers.runtime import NOT_PROTECTED, protected
from orchestrator.program import Program
from orchestrator.result import Goal, Score
from orchestrator.runs.store import Store, VariantRow


def best_variant(store: Store, goal: Goal) -> VariantRow | None:
    """The best variant selection admitted (ties go to the earlier one)."""
    admitted = [v for v in store.variants() if v.verdict == "admitted" and v.value is not None]
    if not admitted:
        return None
    return max(admitted, key=lambda v: (Score(v.value, goal), -v.idx))


def counts(store: Store) -> dict[str, object]:
    """The run's numbers; they add up: calls = variants - 1 + rejected + duplicate + error."""
    evals = store.evaluations()
    calls = Counter(c["outcome"] for c in store.calls())
    return {
        "variants": len(store.variants()),
        "evaluations": len(evals),
        "pending": sum(e.state == "pending" for e in evals),
        "statuses": dict(Counter(e.status.value for e in evals if e.status)),
        "calls": dict(calls),
    }


def generation(store: Store) -> dict[str, Any]:
    """Tokens the run's generation calls used (input, output, reasoning: part of output),
    rejections by reason, and the cost when the run's config has a ``generator.price``."""
    totals = store.call_totals()
    out: dict[str, Any] = {k: totals[k] for k in ("tokens_in", "tokens_out",
                                                   "tokens_reasoning")}
    out["rejections"] = totals["rejections"]
    out["cost_usd"] = None
    try:
        price = json.loads(store.run_info()["config"] or "{}")["generator"].get("price")
    except (ValueError, KeyError, TypeError, AttributeError):
        price = None
    if isinstance(price, dict):
        rate_in = float(price.get("input_per_1m") or 0.0)
        rate_out = float(price.get("output_per_1m") or 0.0)
        out["cost_usd"] = (totals["tokens_in"] * rate_in + totals["tokens_out"] * rate_out) / 1e6
    return out


def tokens_line(gen: dict[str, Any]) -> str:
    """``tokens 1234 in, 567 out (89 reasoning), $0.0012`` — the cost only when priced."""
    line = (f"tokens {gen['tokens_in']} in, {gen['tokens_out']} out "
            f"({gen['tokens_reasoning']} reasoning)")
    if gen.get("cost_usd") is not None:
        line += f", ${gen['cost_usd']:.4f}"
    return line


def summarize(store: Store, program: Program, reason: str | None = None) -> dict[str, Any]:
    """The run's figures, as ``summary.json`` holds them.

    Args:
        reason: why the run stopped; None keeps the one the last ``summary.json`` recorded.
    """
    metric = program.manifest.metric
    info = store.run_info()
    noise = metric.noise if metric.noise is not None else info["noise"]
    seed = store.variants()[0] if store.variants() else None
    best = best_variant(store, metric.goal)
    gain = None
    if best and seed and best.value is not None and seed.value is not None:
        gain = abs(best.value - seed.value)
    return {
        "run": store.run_id, "program": program.name, "state": info["state"],
        "reason": reason if reason is not None else _last_reason(store.folder),
        "metric": metric.name, "goal": metric.goal, "noise": noise,
        "seed": {"id": seed.id, "value": seed.value} if seed else None,
        "best": {"id": best.id, "idx": best.idx, "value": best.value} if best else None,
        "improved": bool(best and seed and best.id != seed.id),
        "gain": gain, "gain_in_noise": gain / noise if gain is not None and noise else None,
        "counts": counts(store),
        "generation": generation(store),
        "protected": protected(program),
    }


def _last_reason(folder: Path) -> str | None:
    try:
        reason = json.loads((folder / "summary.json").read_text()).get("reason")
    except (OSError, ValueError, AttributeError):
        return None
    return reason if isinstance(reason, str) else None


def write_outputs(store: Store, program: Program, summary_md: Path | None = None,
                  reason: str | None = None) -> dict[str, Any]:
    """Write ``summary.json``, ``summary.md`` and ``best.diff`` into the run folder.

    Args:
        summary_md: also append the markdown summary here (e.g. ``$GITHUB_STEP_SUMMARY``).
        reason: why the run stopped (kept in ``summary.json``).
    """
    data = summarize(store, program, reason)
    folder = store.folder
    (folder / "summary.json").write_text(json.dumps(data, indent=2))
    best = best_variant(store, program.manifest.metric.goal)
    (folder / "best.diff").write_text(best.seed_diff if best else "")
    md = markdown(data, best.seed_diff if best and data["improved"] else "")
    (folder / "summary.md").write_text(md)
    if summary_md is not None:
        with open(summary_md, "a") as out:
            out.write(md)
    return data


MD_DIFF_LINES = 400
"""Lines of the best diff a markdown summary shows (GitHub caps a job summary at 1 MiB)."""


def markdown(data: dict[str, Any], best_diff: str = "") -> str:
    """The run as a GitHub job summary: why it stopped, whether it improved and by how much,
    the numbers, rejections and tokens, and the best diff in a fenced block."""
    seed, best, c = data["seed"], data["best"], data["counts"]
    if data.get("improved") and best and seed:
        improved = (f"**Improved:** yes — {data['metric']} {_num(seed['value'])} → "
                    f"{_num(best['value'])} (gain {_num(data['gain'])}"
                    + (f", {_num(data['gain_in_noise'])} × noise {_num(data['noise'])}"
                       if data.get("gain_in_noise") is not None else "") + ")")
    else:
        improved = (f"**Improved:** no — nothing beat the seed ({data['metric']} "
                    f"{_num(seed and seed['value'])})")
    lines = [f"## selfprog run `{data['run']}` — {data['program']}", "",
             *([f"**{NOT_PROTECTED}**", ""] if not data.get("protected", True) else []),
             f"**Stopped:** {data.get('reason') or 'unknown'} (state {data.get('state', '-')})",
             "", improved, "",
             f"| | {data['metric']} ({data['goal']}) |", "|---|---|",
             f"| seed `{seed['id'] if seed else '-'}` | {_num(seed and seed['value'])} |",
             f"| best `{best['id'] if best else '-'}` | {_num(best and best['value'])} |",
             f"| gain | {_num(data['gain'])} ({_num(data['gain_in_noise'])} × noise "
             f"{_num(data['noise'])}) |", "",
             f"{c['variants']} variants, {c['evaluations']} evaluations "
             f"({', '.join(f'{k}: {v}' for k, v in sorted(c['statuses'].items()))}), "
             f"generation calls: {', '.join(f'{k}: {v}' for k, v in sorted(c['calls'].items()))}.",
             ""]
    gen = data.get("generation")
    if gen:
        rejections = ", ".join(f"{k}: {v}" for k, v in gen["rejections"].items()) or "none"
        lines += [f"Generation: {tokens_line(gen)}; rejections: {rejections}.", ""]
    if best_diff:
        shown = best_diff.splitlines()
        cut = len(shown) - MD_DIFF_LINES
        fence = "`" * max(3, _longest_backticks(best_diff) + 1)
        lines += [f"### Best diff (`{best['id'] if best else '-'}` against the seed)", "",
                  f"{fence}diff", *shown[:MD_DIFF_LINES], fence]
        if cut > 0:
            lines.append(f"({cut} more lines in best.diff)")
        lines.append("")
    return "\n".join(lines) + "\n"


def failure_markdown(error: str) -> str:
    """The job summary of a run that failed before it existed (nothing else to tell)."""
    return (f"## selfprog evolve failed\n\n**Stopped:** {error}\n\n"
            "**Improved:** no — no run was created.\n")


def diff_summary(diff: str, width: int = 80) -> str:
    """One line for a diff: files with lines added and removed, then its first changed line,
    e.g. ``train.py +1 -1: LR = 0.01``."""
    files: dict[str, list[int]] = {}
    first = ""
    current = "?"
    for line in diff.splitlines():
        if line.startswith("+++ "):
            current = line[4:].removeprefix("b/").strip()
            files.setdefault(current, [0, 0])
        elif line.startswith("--- "):
            continue
        elif line.startswith(("+", "-")):
            files.setdefault(current, [0, 0])[0 if line[0] == "+" else 1] += 1
            if not first and line[0] == "+" and line[1:].strip():
                first = line[1:].strip()
    if not files:
        return "no change"
    head = ", ".join(f"{name} +{a} -{d}" for name, (a, d) in files.items())
    text = f"{head}: {first}" if first else head
    return text if len(text) <= width else text[: width - 1] + "…"


def _longest_backticks(text: str) -> int:
    longest = run = 0
    for ch in text:
        run = run + 1 if ch == "`" else 0
        longest = max(longest, run)
    return longest


def _num(value: object) -> str:
    return f"{value:.4g}" if isinstance(value, int | float) else "-"

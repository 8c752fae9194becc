"""What a run leaves for people and CI: counts, the best variant, summary.json/.md, best.diff.

Everything here reads the store alone, so ``selfprog best`` and ``selfprog report`` work on a
finished, resumed or killed run alike.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

from orchestrator.outcomes import NOT_PROTECTED, Goal
from orchestrator.runs.store import Store, VariantRow

if TYPE_CHECKING:
    from orchestrator.runs.snapshot import ProgramFacts


BEST_DIFF = "best.diff"
"""The best variant against the program as shipped; written only when a variant beat the seed.
Apply it from the program folder: ``git apply PATH/best.diff`` (or, from the root of a git
repository holding the program, ``git apply --directory=PATH/TO/PROGRAM PATH/best.diff``)."""


def best_variant(store: Store, goal: Goal) -> VariantRow | None:
    """The best variant selection admitted (ties go to the earlier one)."""
    return store.best_admitted(minimize=goal == "minimize")


def counts(store: Store) -> dict[str, object]:
    """The run's numbers; they add up: calls = variants - 1 + rejected + duplicate + error."""
    return store.counts()


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


def summarize(store: Store, program: ProgramFacts, reason: str | None = None
              ) -> dict[str, Any]:
    """The run's figures, as ``summary.json`` holds them.

    Args:
        reason: why the run stopped; None keeps the one the last ``summary.json`` recorded.
    """
    metric = program.manifest.metric
    info = store.run_info()
    noise = metric.noise if metric.noise is not None else info["noise"]
    seed = store.seed_variant()
    best = best_variant(store, metric.goal)
    gain = factor = None
    if best and seed and best.value is not None and seed.value is not None:
        gain = abs(best.value - seed.value)
        if best.value * seed.value > 0:  # one sign: how many times better
            factor = max(abs(seed.value), abs(best.value)) / min(abs(seed.value), abs(best.value))
    ref = best.value if best and best.value else None
    return {
        "run": store.run_id, "program": program.name, "state": info["state"],
        "reason": reason if reason is not None else _last_reason(store.folder),
        "metric": metric.name, "goal": metric.goal, "noise": noise,
        "seed": {"id": seed.id, "value": seed.value} if seed else None,
        "best": {"id": best.id, "idx": best.idx, "value": best.value} if best else None,
        "improved": bool(best and seed and best.id != seed.id),
        "noise_relative": noise / abs(ref) if noise is not None and ref else None,
        "gain": gain, "gain_in_noise": gain / noise if gain is not None and noise else None,
        "gain_factor": factor,
        "counts": counts(store),
        "generation": generation(store),
        "protected": _protected(program),
    }


def _last_reason(folder: Path) -> str | None:
    try:
        reason = json.loads((folder / "summary.json").read_text()).get("reason")
    except (OSError, ValueError, AttributeError):
        return None
    return reason if isinstance(reason, str) else None


def _protected(program: ProgramFacts) -> bool:
    """False for a peer program run with ``isolation = "shared"`` (its score is not protected).
    The light facts carry it; a whole ``Program`` is asked through the peers' rule."""
    known = getattr(program, "protected", None)
    if isinstance(known, bool):
        return known
    from orchestrator.peers.runtime import protected
    from orchestrator.program import Program

    return protected(program) if isinstance(program, Program) else True


def write_outputs(store: Store, program: ProgramFacts, summary_md: Path | None = None,
                  reason: str | None = None) -> dict[str, Any]:
    """Write ``summary.json``, ``summary.md`` and ``best.diff`` into the run folder (no
    ``best.diff`` when no variant beat the seed).

    Args:
        summary_md: also append the markdown summary here (e.g. ``$GITHUB_STEP_SUMMARY``).
        reason: why the run stopped (kept in ``summary.json``).
    """
    data = summarize(store, program, reason)
    folder = store.folder
    (folder / "summary.json").write_text(json.dumps(data, indent=2))
    best = best_variant(store, program.manifest.metric.goal)
    diff = folder / BEST_DIFF
    if best is not None and best.idx != 0 and best.seed_diff:
        diff.write_text(best.seed_diff)
    else:  # nothing beat the seed: no patch (an empty one makes ``git apply`` fail)
        diff.unlink(missing_ok=True)
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

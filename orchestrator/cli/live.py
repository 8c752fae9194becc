"""Live progress of a run in the terminal: slots, best so far, throughput and ETA (rich)."""

from __future__ import annotations

import statistics
import time

from rich.console import Console, Group
from rich.live import Live
from rich.table import Table
from rich.text import Text

from orchestrator.evolution.loop import Evolution
from orchestrator.runs.summary import generation, tokens_line


def snapshot(evo: Evolution) -> dict:
    """The numbers the live view shows, from the loop's memory (cheap enough per tick)."""
    elapsed = time.monotonic() - evo.t0
    done = len(evo.durations)
    best = evo.population.best
    budget = evo.cfg.budget
    eta = None
    if budget.wall_time_s is not None:
        eta = max(0.0, budget.wall_time_s - elapsed)
    if budget.variants is not None and evo.durations:
        left = max(0, budget.variants + 1 - len(evo.files)) + evo.outstanding
        by_count = left * statistics.median(evo.durations) / len(evo.pool.slots)
        eta = by_count if eta is None else min(eta, by_count)
    slots = []
    for slot in evo.pool.slots:
        job = evo.pool.current.get(slot.index)
        slots.append((slot, job[0].variant.id if job else None,
                      time.monotonic() - job[1] if job else 0.0, job[0].seed if job else None))
    return {"elapsed": elapsed, "done": done, "variants": len(evo.files),
            "best": (best.variant_id, best.value) if best else None, "eta": eta,
            "throughput": done / elapsed * 60 if elapsed > 0 else 0.0, "slots": slots,
            "waiting": evo.pool.waiting, "utilisation": evo.pool.utilisation(),
            "noise": evo.noise, "generation": generation_line(evo)}


def generation_line(evo: Evolution) -> str:
    """Tokens (and cost) so far and the rejections by reason, e.g. ``tokens 9100 in, 2400 out
    (0 reasoning)   rejected: no_match 2, truncated 1``."""
    gen = generation(evo.store)
    rejected = ", ".join(f"{k} {v}" for k, v in gen["rejections"].items())
    return tokens_line(gen) + (f"   rejected: {rejected}" if rejected else "")


def render(evo: Evolution) -> Group:
    s = snapshot(evo)
    table = Table(title=f"run {evo.store.run_id}", show_edge=False, expand=False)
    for col in ("slot", "gpus", "running", "seed", "for"):
        table.add_column(col)
    for slot, vid, secs, seed in s["slots"]:
        table.add_row(str(slot.index), ",".join(map(str, slot.gpu_ids)) or "-", vid or "idle",
                      "" if seed is None else str(seed), f"{secs:.0f} s" if vid else "")
    metric = evo.metric
    best = f"{s['best'][1]:.5g} ({s['best'][0]})" if s["best"] else "—"
    eta = f"{s['eta'] / 60:.1f} min" if s["eta"] is not None else "?"
    line = Text(f"best {metric}: {best}   variants {s['variants']}   evaluations {s['done']}   "
                f"queued {s['waiting']}\n{s['throughput']:.2f} evaluations/min   slot use "
                f"{s['utilisation']:.0%}   elapsed {s['elapsed'] / 60:.1f} min   ETA {eta}\n"
                f"{s['generation']}")
    return Group(table, line)


class LiveView:
    """Start with ``start(evo)``, refresh with ``tick(evo)``, end with ``stop()``."""

    def __init__(self, console: Console):
        self.live = Live(console=console, refresh_per_second=2, transient=False)

    def start(self, evo: Evolution) -> None:
        self.live.start()
        self.tick(evo)

    def tick(self, evo: Evolution) -> None:
        self.live.update(render(evo))

    def stop(self) -> None:
        self.live.stop()


class LineView:
    """Progress for logs and CI (no terminal): one line each time an evaluation finishes."""

    def __init__(self, console: Console):
        self.console = console
        self.reported = 0

    def start(self, evo: Evolution) -> None:
        self.reported = len(evo.durations)

    def tick(self, evo: Evolution) -> None:
        if len(evo.durations) == self.reported:
            return
        self.reported = len(evo.durations)
        s = snapshot(evo)
        best = f"{s['best'][1]:.5g} ({s['best'][0]})" if s["best"] else "—"
        eta = f"   ETA {s['eta'] / 60:.1f} min" if s["eta"] is not None else ""
        self.console.print(
            f"[{s['elapsed'] / 60:5.1f} min] evaluations {s['done']}   variants {s['variants']}"
            f"   best {evo.metric} {best}   slot use {s['utilisation']:.0%}{eta}"
            f"   {s['generation']}",
            highlight=False)

    def stop(self) -> None:
        """Nothing to close: every line is already printed."""

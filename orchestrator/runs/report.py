"""A run's report: one static HTML file (inline SVG, CSS and a few lines of JS), read offline.

It shows why the run stopped and what it gained, every evaluation and the best so far on a
labelled chart (see ``plot``), the ten best variants with who wrote them, the lineage tree
(see ``lineage``), rejections and tokens by model, and each variant's coloured diff against its
parent. Everything comes from the store, so a report can be written for a running or killed run.
"""

from __future__ import annotations

import html
from collections import defaultdict
from pathlib import Path
from typing import Any

from orchestrator.peers.runtime import NOT_PROTECTED, protected
from orchestrator.program import Program
from orchestrator.result import Goal, Score
from orchestrator.runs import lineage, plot
from orchestrator.runs.rows import EvalRow
from orchestrator.runs.store import Store, VariantRow
from orchestrator.runs.summary import diff_summary, summarize, tokens_line

TOP = 10
"""Rows of the best-variants table."""
DIFF_LINES = 300
"""Lines of one variant's diff the page holds (the whole diff is in its folder)."""
_CSS = """body{font:14px system-ui,sans-serif;margin:2em;max-width:1100px}
table{border-collapse:collapse}td,th{padding:2px 8px;border-bottom:1px solid #ddd;text-align:left}
td.num{text-align:right;font-variant-numeric:tabular-nums}
pre.diff{background:#f6f8fa;padding:8px;overflow-x:auto;font-size:12px;margin:0}
pre.diff .a{background:#e6ffec;color:#116329}pre.diff .d{background:#ffebe9;color:#82071e}
pre.diff .h{color:#6639ba}pre.diff .f{color:#555;font-weight:bold}
.legend span{margin-right:1em}.facts td:first-child{color:#555}"""


def variant_status(store: Store, evals: list[EvalRow] | None = None) -> dict[str, str]:
    """Each variant's status: ``ok`` when every evaluation is, else its first failure."""
    out: dict[str, str] = {}
    for ev in store.evaluations() if evals is None else evals:
        status = ev.status.value if ev.status else "pending"
        if out.get(ev.variant_id, "ok") == "ok":
            out[ev.variant_id] = status
    return out


def write_report(store: Store, program: Program, path: Path | None = None) -> Path:
    """Write ``report.html`` into the run folder (or to ``path``) and return where it is."""
    path = path or store.folder / "report.html"
    variants, evals = store.variants(), store.evaluations()
    status = variant_status(store, evals)
    goal = program.manifest.metric.goal
    data = summarize(store, program)
    calls = store.calls()
    writers = {c["variant_id"]: c for c in calls if c["outcome"] == "variant" and c["variant_id"]}
    best_id = data["best"]["id"] if data["best"] else None
    parts = [f"<!doctype html><html lang=en><meta charset=utf-8><title>selfprog "
             f"{html.escape(store.run_id)}</title>",
             f"<style>{_CSS}\n{lineage.CSS}</style>",
             f"<h1>Run {html.escape(store.run_id)} — {html.escape(program.name)}</h1>",
             *([f"<p><strong>{html.escape(NOT_PROTECTED)}</strong></p>"]
               if not protected(program) else []),
             _header(data),
             "<h2>Evaluations and the best so far</h2>", evaluations_svg(evals, variants, data["metric"], goal),
             plot.legend_html(),
             f"<h2>Top {TOP}</h2>", top_table(variants, status, data, writers),
             "<h2>Lineage</h2>", lineage.SCRIPT,
             lineage.lineage_html(variants, status, goal, best_id),
             "<h2>Generation</h2>", _generation(data.get("generation")),
             calls_by_model(calls), rejections_html(store),
             *spec_html(store, status), written_by_html(calls, variants),
             "<h2>Variants</h2>", _table(variants, status, drafted(store), store.folder)]
    path.write_text("\n".join(parts))
    return path


def best_so_far(variants: list[VariantRow], goal: Goal) -> list[tuple[int, float]]:
    """(index, best admitted value up to it) at every index where the best changed."""
    points, best = [], None
    for v in variants:
        if v.verdict == "admitted" and v.value is not None and (
                best is None or Score(best, goal) < Score(v.value, goal)):
            best = v.value
            points.append((v.idx, v.value))
    return points


def evaluations_svg(evals: list[EvalRow], variants: list[VariantRow], metric: str,
                    goal: Goal) -> str:
    """The chart: one point per evaluation (its own metric, not the variant's mean)."""
    idx = {v.id: v.idx for v in variants}
    seen: set[str] = set()
    points = []
    for ev in evals:
        if ev.variant_id not in idx:
            continue
        st = ev.status.value if ev.status else "pending"
        again = ev.variant_id in seen
        seen.add(ev.variant_id)
        points.append(plot.Point(
            idx[ev.variant_id], ev.metric, st, again,
            f"#{idx[ev.variant_id]} {ev.variant_id} seed {ev.seed} ({ev.purpose}) {st} "
            f"{ev.metric if ev.metric is not None else ''}"))
    return plot.chart_svg(points, best_so_far(variants, goal), metric, str(goal),
                          max((v.idx for v in variants), default=1))


def drafted(store: Store) -> set[str]:
    """Variants a model wrote from the task's spec (``--from-spec``), not by editing a parent."""
    return {c["variant_id"] for c in store.calls()
            if c["kind"] == "spec" and c["outcome"] == "variant" and c["variant_id"]}


def spec_html(store: Store, status: dict[str, str]) -> list[str]:
    """The report's part on drafts written from the spec: how many calls, which became
    variants, how each ran. Nothing for a run that started from a reference."""
    calls = [c for c in store.calls() if c["kind"] == "spec"]
    if not calls:
        return []
    made = [c["variant_id"] for c in calls if c["outcome"] == "variant" and c["variant_id"]]
    ok = [v for v in made if status.get(v) == "ok"]
    rows = [f'<li><a href="#v{html.escape(v)}">{html.escape(v)}</a>: '
            f'{html.escape(status.get(v, "pending"))}</li>' for v in made]
    return ["<h2>Written from the spec</h2>",
            f"<p>{len(calls)} first drafts asked for, {len(made)} became variants, {len(ok)} "
            "ran ok. Every other variant descends from one of these.</p>",
            "<ul>" + "".join(rows) + "</ul>"]


def written_by_html(calls: list[dict], variants: list[VariantRow]) -> str:
    """Which generation's model wrote which child, for a run whose generator is the program's
    own model (``self``): one row per writing model ('the given model' for the one the run
    started with, else the variant whose export it is), with the children it wrote, each with
    its edit kind and verdict. Empty when no call came from ``self``."""
    own = [c for c in calls if c.get("backend") == "self"]
    if not own:
        return ""
    by_id = {v.id: v for v in variants}
    wrote: dict[str, list[str]] = defaultdict(list)
    tried: dict[str, int] = defaultdict(int)
    for c in own:
        writer = c.get("generator") or ""
        tried[writer] += 1
        child = by_id.get(c.get("variant_id") or "")
        if child is not None:
            wrote[writer].append(f'<a href="#v{child.id}">#{child.idx} {child.id}</a> '
                                 f'({html.escape(c.get("kind") or "?")}, '
                                 f'{html.escape(child.verdict or "pending")})')
    rows = ["<h2>Written by</h2>", '<table id="written-by"><tr><th>model of</th>'
            "<th>calls</th><th>children</th></tr>"]
    for writer in sorted(tried, key=lambda w: (w != "", by_id[w].idx if w in by_id else 0)):
        who = "the given model" if not writer else (
            f'<a href="#v{writer}">#{by_id[writer].idx} {writer}</a>' if writer in by_id
            else html.escape(writer))
        rows.append(f"<tr><td>{who}</td><td>{tried[writer]}</td>"
                    f"<td>{', '.join(wrote[writer]) or '—'}</td></tr>")
    return "\n".join([*rows, "</table>"])


def top_table(variants: list[VariantRow], status: dict[str, str], data: dict[str, Any],
              writers: dict[str, dict]) -> str:
    """The best variants by value: gain over the seed (and in noise units), what changed, and
    which backend and model wrote it."""
    goal = data["goal"]
    valued = sorted((v for v in variants if v.value is not None),
                    key=lambda v: (Score(v.value, goal), -v.idx), reverse=True)[:TOP]
    if not valued:
        return "<p>No variant has a value yet.</p>"
    seed = (data["seed"] or {}).get("value")
    noise = data["noise"]
    rows = ['<table id="top"><tr><th>rank</th><th>variant</th><th>value</th><th>gain</th>'
            "<th>× noise</th><th>status</th><th>verdict</th><th>change</th><th>written by</th></tr>"]
    best_id = (data["best"] or {}).get("id")
    for rank, v in enumerate(valued, 1):
        gain = None
        if seed is not None and v.value is not None:
            gain = (v.value - seed) if goal == "maximize" else (seed - v.value)
        in_noise = gain / noise if gain is not None and noise else None
        mark = " ★" if v.id == best_id else ""
        rows.append(
            f'<tr><td class="num">{rank}</td><td><a href="#v{v.id}">#{v.idx} {v.id}</a>{mark}'
            f'</td><td class="num">{v.value:.5g}</td><td class="num">{_fmt(gain)}</td>'
            f'<td class="num">{_fmt(in_noise, ".3g")}</td><td class="num">{status.get(v.id, "")}'
            f'</td><td>{html.escape(v.verdict or "")}</td>'
            f"<td><code>{html.escape(diff_summary(v.diff) if v.diff else '(the seed)')}"
            f"</code></td><td>{html.escape(_writer(writers.get(v.id)))}</td></tr>")
    return "\n".join([*rows, "</table>"])


def _writer(call: dict | None) -> str:
    """``backend/model (kind)``; a self-generated variant also names the variant whose model
    wrote it."""
    if call is None:
        return "— (the seed)"
    who = f"{call.get('backend') or '?'}/{call.get('model') or '?'}"
    if call.get("kind"):
        who += f" ({call['kind']})"
    if call.get("generator"):
        who += f" by {call['generator']}"
    return who


def calls_by_model(calls: list[dict]) -> str:
    """Calls, variants made and tokens per backend/model."""
    if not calls:
        return ""
    rows: dict[str, list[int]] = defaultdict(lambda: [0, 0, 0, 0, 0])
    for c in calls:
        r = rows[f"{c.get('backend') or '?'}/{c.get('model') or '?'}"]
        r[0] += 1
        r[1] += c["outcome"] == "variant"
        r[2] += c.get("tokens_in") or 0
        r[3] += c.get("tokens_out") or 0
        r[4] += c.get("tokens_reasoning") or 0
    out = ['<table id="tokens"><tr><th>backend/model</th><th>calls</th><th>variants</th>'
           "<th>tokens in</th><th>tokens out</th><th>reasoning</th></tr>"]
    for who, r in sorted(rows.items()):
        out.append(f"<tr><td>{html.escape(who)}</td>"
                   + "".join(f'<td class="num">{n}</td>' for n in r) + "</tr>")
    return "\n".join([*out, "</table>"])


def rejections_html(store: Store, last: int = 10) -> str:
    """Rejected calls by reason, and the newest rejections' full reasons."""
    reasons = store.call_totals()["rejections"]
    if not reasons:
        return "<p>No proposal was rejected.</p>"
    rows = ['<table id="rejections"><tr><th>rejected because</th><th>calls</th></tr>']
    rows += [f'<tr><td>{html.escape(str(k))}</td><td class="num">{n}</td></tr>'
             for k, n in reasons.items()]
    rows.append("</table>")
    recent = store.rejected_calls(last)
    if recent:
        rows.append(f"<details><summary>the last {len(recent)} rejections</summary><ul>")
        rows += [f"<li>call {c['id']} from {html.escape(c['parent_id'] or '—')}: "
                 f"{html.escape((c['rejection'] or '')[:300])}</li>" for c in recent]
        rows.append("</ul></details>")
    return "\n".join(rows)


def colored_diff(diff: str) -> str:
    """A unified diff as HTML lines classed added, deleted, hunk or file header."""
    lines = diff.splitlines()
    out = []
    for line in lines[:DIFF_LINES]:
        cls = ("f" if line.startswith(("+++", "---")) else "a" if line.startswith("+")
               else "d" if line.startswith("-") else "h" if line.startswith("@@") else "")
        text = html.escape(line)
        out.append(f'<span class="{cls}">{text}</span>' if cls else text)
    if len(lines) > DIFF_LINES:
        out.append(f"… {len(lines) - DIFF_LINES} more lines in the variant's parent.diff")
    return "\n".join(out)


def _table(variants: list[VariantRow], status: dict[str, str],
           from_spec: set[str] | None = None, run: Path | None = None) -> str:
    rows = ["<table><tr><th>#</th><th>variant</th><th>parent</th><th>status</th><th>value</th>"
            "<th>verdict</th><th>folder</th></tr>"]
    for v in variants:
        val = f"{v.value:.5g}" if v.value is not None else "—"
        rel = _relative(v.folder, run)
        rows.append(f'<tr id="v{v.id}"><td>{v.idx}</td><td>{v.id}</td><td>{v.parent_id or ""}'
                    f'</td><td>{status.get(v.id, "pending")}</td><td>{val}</td>'
                    f'<td>{v.verdict or ""}</td><td><a href="{html.escape(rel)}">'
                    f"{html.escape(rel)}</a></td></tr>")
        diff = colored_diff(v.diff) if v.diff else (
            "(written from the spec)" if v.id in (from_spec or set()) else "(the seed)")
        rows.append(f'<tr><td></td><td colspan="6"><details><summary>diff</summary>'
                    f'<pre class="diff">{diff}</pre></details></td></tr>')
    return "\n".join([*rows, "</table>"])


def _relative(folder: Path, run: Path | None) -> str:
    try:
        return folder.relative_to(run).as_posix() if run else folder.as_posix()
    except ValueError:
        return folder.as_posix()


def _fmt(value: float | None, spec: str = ".4g") -> str:
    return "—" if value is None else format(value, spec)


def _header(data: dict) -> str:
    seed, best = data["seed"] or {}, data["best"] or {}
    improved = ("yes" if data.get("improved") else "no (nothing beat the seed)")
    facts = [("metric", f"{data['metric']} ({data['goal']})"),
             ("state", f"{data['state']}; stopped: {data.get('reason') or '—'}"),
             ("seed", f"{_fmt(seed.get('value'), '.5g')} ({seed.get('id', '—')})"),
             ("best", f"{_fmt(best.get('value'), '.5g')} ({best.get('id', '—')})"),
             ("improved", f"{improved}; gain {_fmt(data['gain'])} = "
                          f"{_fmt(data['gain_in_noise'], '.3g')} × noise "
                          f"{_fmt(data['noise'])}"),
             ("size", f"{data['counts']['variants']} variants, "
                      f"{data['counts']['evaluations']} evaluations")]
    rows = "".join(f"<tr><td>{k}</td><td>{html.escape(v)}</td></tr>" for k, v in facts)
    return f'<table class="facts" id="facts">{rows}</table>' + _generation(data.get("generation"))


def _generation(gen: dict | None) -> str:
    """Tokens, cost and rejections by reason, one paragraph."""
    if not gen:
        return ""
    rejected = ", ".join(f"{html.escape(str(k))}: {v}" for k, v in gen["rejections"].items())
    return (f"<p>generation: {html.escape(tokens_line(gen))}; rejections: "
            f"{rejected or 'none'}.</p>")

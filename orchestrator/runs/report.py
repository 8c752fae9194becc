"""A run's report: one static HTML file with inline SVG, readable without a server.

It shows the best-so-far curve, every variant's metric by index and status (failures drawn on the
floor, since they have no value), the lineage tree, and each variant's diff against its parent.
Everything comes from the store, so a report can be written for a running or killed run.
"""

from __future__ import annotations

import html
from collections import defaultdict
from pathlib import Path

from orchestrator.peers.runtime import NOT_PROTECTED, protected
from orchestrator.program import Program
from orchestrator.result import Goal, Score
from orchestrator.runs.store import Store, VariantRow
from orchestrator.runs.summary import summarize, tokens_line

_W, _H, _PAD = 720, 300, 48
_COLORS = {"ok": "#2b7bb9", "crash": "#d62728", "timeout": "#ff7f0e", "oom": "#9467bd",
           "invalid": "#8c564b", "infra_error": "#7f7f7f", "pending": "#bbbbbb"}
_CSS = """body{font:14px system-ui,sans-serif;margin:2em;max-width:980px}
table{border-collapse:collapse}td,th{padding:2px 8px;border-bottom:1px solid #ddd;text-align:left}
pre.diff{background:#f6f8fa;padding:8px;overflow-x:auto;font-size:12px}
ul.tree{list-style:none;padding-left:1.2em;border-left:1px dotted #aaa}
.admitted{font-weight:bold}.legend span{margin-right:1em}"""


def variant_status(store: Store) -> dict[str, str]:
    """Each variant's status: ``ok`` when every evaluation is, else its first failure."""
    out: dict[str, str] = {}
    for ev in store.evaluations():
        status = ev.status.value if ev.status else "pending"
        if out.get(ev.variant_id, "ok") == "ok":
            out[ev.variant_id] = status
    return out


def write_report(store: Store, program: Program, path: Path | None = None) -> Path:
    """Write ``report.html`` into the run folder (or to ``path``) and return where it is."""
    path = path or store.folder / "report.html"
    variants = store.variants()
    status = variant_status(store)
    goal = program.manifest.metric.goal
    data = summarize(store, program)
    parts = [f"<!doctype html><meta charset=utf-8><title>selfprog {store.run_id}</title>",
             f"<style>{_CSS}</style>",
             f"<h1>Run {html.escape(store.run_id)} — {html.escape(program.name)}</h1>",
             *([f"<p><strong>{html.escape(NOT_PROTECTED)}</strong></p>"]
               if not protected(program) else []),
             _header(data), "<h2>Best so far</h2>", curve_svg(variants, status, goal),
             _legend(), "<h2>Lineage</h2>", lineage_html(variants, status),
             *spec_html(store, status), written_by_html(store.calls(), variants),
             "<h2>Variants</h2>", _table(variants, status, drafted(store))]
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


def curve_svg(variants: list[VariantRow], status: dict[str, str], goal: Goal) -> str:
    values = [v.value for v in variants if v.value is not None]
    if not values:
        return "<p>No variant has a value yet.</p>"
    lo, hi = min(values), max(values)
    span = (hi - lo) or 1.0
    n = max(1, max(v.idx for v in variants))
    x = lambda i: _PAD + (_W - 2 * _PAD) * i / n  # noqa: E731
    y = lambda val: _H - _PAD - (_H - 2 * _PAD) * (val - lo) / span  # noqa: E731
    out = [f'<svg id="best-curve" width="{_W}" height="{_H}" xmlns="http://www.w3.org/2000/svg">',
           f'<rect width="{_W}" height="{_H}" fill="white" stroke="#ccc"/>']
    for val in (lo, hi):
        out.append(f'<text x="4" y="{y(val) + 4:.1f}" font-size="11">{val:.4g}</text>')
    out.append(f'<text x="{_W / 2}" y="{_H - 8}" font-size="11">variant index</text>')
    for v in variants:
        st = status.get(v.id, "pending")
        color = _COLORS.get(st, "#000")
        title = f"<title>#{v.idx} {v.id} {st} {v.value if v.value is not None else ''}</title>"
        if v.value is None:
            out.append(f'<path class="variant" d="M{x(v.idx) - 3:.1f},{_H - _PAD + 12} l6,6 m0,-6 '
                       f'l-6,6" stroke="{color}" stroke-width="2">{title}</path>')
        else:
            out.append(f'<circle class="variant" cx="{x(v.idx):.1f}" cy="{y(v.value):.1f}" r="4" '
                       f'fill="{color}" fill-opacity="0.7">{title}</circle>')
    steps = best_so_far(variants, goal)
    if steps:
        pts, last = [], None
        for idx, val in steps:
            if last is not None:
                pts.append(f"{x(idx):.1f},{y(last):.1f}")
            pts.append(f"{x(idx):.1f},{y(val):.1f}")
            last = val
        pts.append(f"{x(n):.1f},{y(last):.1f}")
        out.append(f'<polyline id="best-line" points="{" ".join(pts)}" fill="none" '
                   'stroke="#2ca02c" stroke-width="2"/>')
    out.append("</svg>")
    return "\n".join(out)


def lineage_html(variants: list[VariantRow], status: dict[str, str]) -> str:
    children: dict[str | None, list[VariantRow]] = defaultdict(list)
    for v in variants:
        children[v.parent_id].append(v)

    def node(v: VariantRow) -> str:
        val = f"{v.value:.4g}" if v.value is not None else "—"
        kids = "".join(node(c) for c in children.get(v.id, []))
        sub = f'<ul class="tree">{kids}</ul>' if kids else ""
        return (f'<li class="{v.verdict or ""}"><a href="#v{v.id}">#{v.idx} {v.id}</a> '
                f'{status.get(v.id, "pending")} {val}{sub}</li>')

    return f'<ul class="tree" id="lineage">{"".join(node(v) for v in children[None])}</ul>'


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


def _table(variants: list[VariantRow], status: dict[str, str],
           from_spec: set[str] | None = None) -> str:
    rows = ["<table><tr><th>#</th><th>variant</th><th>parent</th><th>status</th><th>value</th>"
            "<th>verdict</th></tr>"]
    for v in variants:
        val = f"{v.value:.5g}" if v.value is not None else "—"
        rows.append(f'<tr id="v{v.id}"><td>{v.idx}</td><td>{v.id}</td><td>{v.parent_id or ""}'
                    f'</td><td>{status.get(v.id, "pending")}</td><td>{val}</td>'
                    f'<td>{v.verdict or ""}</td></tr>')
        diff = v.diff or ("(written from the spec)" if v.id in (from_spec or set())
                          else "(the seed)")
        rows.append(f'<tr><td></td><td colspan="5"><details><summary>diff</summary>'
                    f'<pre class="diff">{html.escape(diff)}</pre></details></td></tr>')
    return "\n".join([*rows, "</table>"])


def _header(data: dict) -> str:
    seed, best = data["seed"] or {}, data["best"] or {}
    fmt = lambda v: f"{v:.5g}" if isinstance(v, float) else "—"  # noqa: E731
    return (f"<p>{data['metric']} ({data['goal']}): seed {fmt(seed.get('value'))}, best "
            f"{fmt(best.get('value'))} (<code>{best.get('id', '—')}</code>), noise "
            f"{fmt(data['noise'])}; {data['counts']['variants']} variants, "
            f"{data['counts']['evaluations']} evaluations; state {data['state']}.</p>"
            + _generation(data.get("generation")))


def _generation(gen: dict | None) -> str:
    """Tokens, cost and rejections by reason, one paragraph."""
    if not gen:
        return ""
    rejected = ", ".join(f"{html.escape(str(k))}: {v}" for k, v in gen["rejections"].items())
    return (f"<p>generation: {html.escape(tokens_line(gen))}; rejections: "
            f"{rejected or 'none'}.</p>")


def _legend() -> str:
    spans = "".join(f'<span style="color:{c}">● {s}</span>' for s, c in _COLORS.items())
    return f'<p class="legend">{spans}<span style="color:#2ca02c">— best so far</span></p>'

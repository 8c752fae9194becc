"""The report's lineage tree: nested ``<details>``, readable at thousands of variants.

Only the best variant's line of ancestors and the first levels are open; every other subtree is
folded, and past the first few children of a node the rest fold into one "N more" entry, so a
2,000-variant run opens as a page, not as screens of list. Children are ordered best path
first, then by value (best first), failures last. The best is marked, its ancestors highlighted;
a style applies to one node's label only, never to a whole subtree.
"""

from __future__ import annotations

import html
from collections import defaultdict

from orchestrator.result import Goal, Score
from orchestrator.runs.plot import COLORS
from orchestrator.runs.store import VariantRow

OPEN_DEPTH = 2
"""Levels open when the page loads (the best path is open at any depth)."""
SHOWN_CHILDREN = 6
"""Children listed under a node before the rest fold into one "N more" entry."""
CSS = """#lineage{font:12px ui-monospace,monospace;overflow-x:auto}
#lineage details>summary{cursor:pointer;list-style:revert}
#lineage .kids{margin-left:14px;border-left:1px dotted #aaa;padding-left:4px}
#lineage .leaf{padding-left:18px}
#lineage .node.onpath{background:#e3f4e3}
#lineage .node.best{background:#b9e6b9;outline:1px solid #2ca02c}
#lineage .mark{color:#2ca02c;font-weight:bold}
#lineage .more>summary{color:#666}"""
SCRIPT = """<p><button onclick="document.querySelectorAll('#lineage details').forEach(d=>d.open=true)">
expand all</button> <button onclick="document.querySelectorAll('#lineage details').forEach(
d=>d.open=d.classList.contains('onpath'))">best path only</button></p>"""


def lineage_html(variants: list[VariantRow], status: dict[str, str], goal: Goal,
                 best_id: str | None) -> str:
    """The tree of every variant, as one ``<div id="lineage">``."""
    by_id = {v.id: v for v in variants}
    children: dict[str | None, list[VariantRow]] = defaultdict(list)
    for v in variants:
        children[v.parent_id if v.parent_id in by_id else None].append(v)
    descendants: dict[str, int] = defaultdict(int)
    for v in reversed(variants):  # a child always has a higher index than its parent
        if v.parent_id in by_id:
            descendants[v.parent_id] += 1 + descendants[v.id]
    path: set[str] = set()
    vid = best_id
    while vid in by_id and vid not in path:
        path.add(vid)
        vid = by_id[vid].parent_id

    def order(kids: list[VariantRow]) -> list[VariantRow]:
        return sorted(kids, key=lambda k: (k.id not in path, -_rank(k, goal), k.idx))

    def label(v: VariantRow) -> str:
        st = status.get(v.id, "pending")
        val = f"{v.value:.4g}" if v.value is not None else "—"
        cls = "node" + (" onpath" if v.id in path else "") + (" best" if v.id == best_id else "")
        mark = ' <span class="mark">★ best</span>' if v.id == best_id else ""
        more = f" ({descendants[v.id]} below)" if descendants[v.id] else ""
        return (f'<span class="{cls}"><span style="color:{COLORS.get(st, "#000")}">●</span> '
                f'<a href="#v{v.id}">#{v.idx} {v.id}</a> {val} {html.escape(st)} '
                f'{html.escape(v.verdict or "")}{more}{mark}</span>')

    out: list[str] = ['<div id="lineage">']
    # an explicit stack, not recursion: a chain of thousands of variants is a valid run
    stack: list[tuple[str, VariantRow | str, int]] = [
        ("node", v, 0) for v in reversed(order(children[None]))]
    while stack:
        what, item, depth = stack.pop()
        if what == "close":
            out.append(str(item))
            continue
        assert isinstance(item, VariantRow)
        kids = order(children.get(item.id, []))
        if not kids:
            out.append(f'<div class="leaf">{label(item)}</div>')
            continue
        is_open = item.id in path or depth < OPEN_DEPTH
        cls = ' class="onpath"' if item.id in path else ""
        out.append(f'<details{cls}{" open" if is_open else ""}><summary>{label(item)}</summary>'
                   '<div class="kids">')
        shown, folded = kids[:SHOWN_CHILDREN], kids[SHOWN_CHILDREN:]
        stack.append(("close", "</div></details>", depth))
        if folded:
            stack.append(("close", "</div></details>", depth))
            stack.extend(("node", k, depth + 1) for k in reversed(folded))
            stack.append(("close", f'<details class="more"><summary>{len(folded)} more '
                                   'children</summary><div class="kids">', depth))
        stack.extend(("node", k, depth + 1) for k in reversed(shown))
    out.append("</div>")
    return "\n".join(out)


def _rank(v: VariantRow, goal: Goal) -> float:
    """Bigger is better, whatever the goal; no value ranks last."""
    return float(Score(v.value, goal).key)

"""The report and the CI outputs, from a run made with the fake runner."""

from __future__ import annotations

import json
import re
from html.parser import HTMLParser

from orchestrator.runs.gc import collect
from orchestrator.runs.plot import Point, chart_svg, uses_log
from orchestrator.runs.report import write_report
from orchestrator.runs.summary import write_outputs

from tests.evolution.fakes import FakeGenerator, FakeRunner
from tests.evolution.test_loop import evolve


class Finder(HTMLParser):
    def __init__(self):
        super().__init__()
        self.ids: set[str] = set()
        self.tags: list[tuple[str, dict]] = []
        self.diffs: list[str] = []
        self._in_diff = False

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        self.tags.append((tag, attrs))
        if "id" in attrs:
            self.ids.add(attrs["id"])
        if tag == "pre" and attrs.get("class") == "diff":
            self._in_diff = True

    def handle_data(self, data):
        if self._in_diff:
            self.diffs.append(data)

    def handle_endtag(self, tag):
        if tag == "pre":
            self._in_diff = False


def test_the_report_renders_every_evaluation_the_lineage_and_coloured_diffs(tmp_path):
    evo, out = evolve(tmp_path, FakeRunner(crash_on={1.0}),
                      FakeGenerator(script=[1.0, 0.5, 2.0, 2.5]),
                      **{"budget.variants": 4, "selection.k": 1000.0})
    path = write_report(evo.store, evo.program)
    page = Finder()
    page.feed(path.read_text())
    assert {"best-curve", "best-line", "lineage", "top", "chart-title", "x-label",
            "y-label"} <= page.ids
    evals = evo.store.evaluations()
    marks = [(t, a) for t, a in page.tags if "evaluation" in a.get("class", "").split()]
    assert len(marks) == len(evals) > 5, "one mark per evaluation, failures included"
    assert sum("again" in a["class"] for _t, a in marks) == len(evals) - 5, \
        "every evaluation after a variant's first is drawn as a re-evaluation"
    assert any(t == "path" and "failed" in a["class"] for t, a in marks), \
        "the crashed variant is drawn below the axis"
    assert any("+X = 2.5" in d for d in page.diffs) and any("-X = 0.0" in d for d in page.diffs)
    assert any(t == "span" and a.get("class") == "a" for t, a in page.tags), "added lines coloured"
    assert path.read_text().count('class="node') == 5
    assert path.read_text().count("★ best") == 1


def test_ci_outputs_name_the_best_and_its_patch_against_the_seed(tmp_path):
    evo, out = evolve(tmp_path, FakeRunner(), FakeGenerator(script=[1.0, 2.0]),
                      **{"budget.variants": 2})
    md = tmp_path / "step-summary.md"
    md.write_text("earlier step\n")
    data = write_outputs(evo.store, evo.program, md)
    assert data["best"]["id"] == out.best_id
    assert json.loads((evo.store.folder / "summary.json").read_text())["best"]["value"] == 1.0
    diff = (evo.store.folder / "best.diff").read_text()
    assert diff.startswith("--- a/train.py") and "+X = 2.0" in diff and "-X = 0.0" in diff
    text = md.read_text()
    assert text.startswith("earlier step\n") and out.best_id in text and "| best" in text


def test_gc_keeps_the_best_the_seed_and_the_kept_and_the_report_still_renders(tmp_path):
    evo, out = evolve(tmp_path, FakeRunner(), FakeGenerator(script=[1.0, 2.0, 0.5]),
                      **{"budget.variants": 3})
    variants = evo.store.variants()
    keep = next(v.id for v in variants if v.id not in (out.best_id, variants[0].id))
    done = collect(evo.store, evo.program, None, keep=(keep[:6],))
    assert len(done.variants) == 1
    gone = evo.store.variant(done.variants[0])
    assert gone.collected and not gone.folder.exists()
    for v in evo.store.variants():
        assert v.folder.exists() == (v.id != gone.id)
    assert "+X = " in write_report(evo.store, evo.program).read_text()


def _chart(values, again=()):
    points = [Point(i, v, "ok" if v is not None else "crash", i in again, f"#{i}")
              for i, v in enumerate(values)]
    return chart_svg(points, [(0, values[0])], "loss", "minimize", len(values) - 1)


def _labels(svg: str) -> list[str]:
    return re.findall(r'text-anchor="end">([^<]+)</text>', svg)


def test_a_metric_spanning_decades_gets_a_log_axis_with_a_label_per_decade():
    svg = _chart([0.5, 0.05, 0.004, 0.0023])
    assert "(log scale)" in svg
    labels = _labels(svg)
    assert {"0.01", "0.1"} <= set(labels) and len(labels) >= 5, labels
    assert all(re.fullmatch(r"[125](e-0\d)?|0\.0*[125]", t) for t in labels), labels
    wide = _labels(_chart([100.0, 1.0, 0.01, 0.0001]))
    assert wide == ["0.0001", "0.001", "0.01", "0.1", "1", "10", "100"], "one label a decade"
    linear = _chart([0.5, 0.45, 0.41])
    assert "(log scale)" not in linear and len(_labels(linear)) >= 4
    assert not uses_log([-1.0, 10.0, 1000.0]), "a value at or below zero keeps the axis linear"


def test_values_that_cannot_be_drawn_do_not_break_the_chart():
    svg = _chart([1.0, float("nan"), float("inf"), None, 1.0])
    assert svg.count('class="evaluation failed"') == 3
    assert "nan" not in svg.split("<title>")[0]
    tiny = _chart([1.0, 1e-300])
    assert len(_labels(tiny)) <= 11, "hundreds of decades still get a readable axis"
    assert "No evaluation has a value yet" in _chart([None, None])

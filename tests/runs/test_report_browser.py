"""The report as a person sees it: rendered by a real browser (Debian's headless ``chromium``).

``make test`` installs chromium when it is missing; without one these tests fail, never skip.
"""

from __future__ import annotations

import shutil
import subprocess
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from benchmarks.report_scale import build_run
from orchestrator.program import Program
from orchestrator.runs.plot import BEST
from orchestrator.runs.report import write_report
from orchestrator.runs.store import Store
from orchestrator.runs.summary import best_variant

BEST_NODE = (0xB9, 0xE6, 0xB9)
"""The best variant's label background in the lineage (``lineage.CSS``)."""


def chromium(*args: str, profile: Path) -> subprocess.CompletedProcess[str]:
    exe = shutil.which("chromium") or shutil.which("chromium-browser")
    if exe is None:
        pytest.fail("the report's browser tests need Debian's chromium (`make test` installs it; "
                    "or apt-get install chromium)")
    return subprocess.run([exe, "--headless", "--no-sandbox", "--disable-gpu",
                           "--hide-scrollbars", f"--user-data-dir={profile}", *args],
                          capture_output=True, text=True, timeout=120, check=True)


@pytest.fixture(scope="module")
def report(tmp_path_factory) -> tuple[Path, Store, Program]:
    folder = build_run(tmp_path_factory.mktemp("run"), 80)
    store = Store(folder)
    program = Program.load(store.run_info()["program"])
    return write_report(store, program), store, program


class Dom(HTMLParser):
    """The elements of the serialized DOM that matter here."""

    def __init__(self) -> None:
        super().__init__()
        self.details: list[dict] = []
        self.best_line: dict | None = None
        self.evaluations = 0

    def handle_starttag(self, tag, attrs):
        a = {k: v or "" for k, v in attrs}
        if tag == "details":
            self.details.append(a)
        if a.get("id") == "best-line":
            self.best_line = a
        if "evaluation" in a.get("class", "").split():
            self.evaluations += 1


def test_chromium_builds_the_curve_every_evaluation_and_a_folded_tree(report, tmp_path):
    path, store, _program = report
    out = chromium("--dump-dom", path.as_uri(), profile=tmp_path / "profile").stdout
    dom = Dom()
    dom.feed(out)
    assert dom.best_line is not None and len(dom.best_line["points"].split()) >= 4
    assert dom.evaluations == len(store.evaluations())
    opened = [d for d in dom.details if "open" in d]
    assert 0 < len(opened) < len(dom.details), "some subtrees are folded, the best path is open"
    assert all("open" in d for d in dom.details if "onpath" in d.get("class", ""))


def test_a_screenshot_shows_the_best_line_and_the_marked_best(report, tmp_path):
    path, store, program = report
    shot = tmp_path / "report.png"
    chromium(f"--screenshot={shot}", "--window-size=1200,1800", path.as_uri(),
             profile=tmp_path / "profile")
    pixels = np.asarray(Image.open(shot).convert("RGB"))
    assert len(np.unique(pixels.reshape(-1, 3), axis=0)) > 20, "the page is not blank"

    def rows_of(color: tuple[int, ...]) -> np.ndarray:
        return np.nonzero((pixels == color).all(axis=2).any(axis=1))[0]

    line_rows = rows_of(tuple(int(BEST[i:i + 2], 16) for i in (1, 3, 5)))
    assert len(line_rows) > 30, "the best-so-far line is drawn across the chart"
    best_rows = rows_of(BEST_NODE)
    assert len(best_rows) and best_rows.min() > np.median(line_rows), \
        "the best variant is highlighted in the lineage, below the chart"
    assert best_variant(store, program.manifest.metric.goal) is not None

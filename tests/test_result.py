"""Direction-aware scores: better is better whichever way the metric points; failure is worst."""

from __future__ import annotations

import math

from orchestrator.result import Score, Status, VariantResult


def test_minimize_and_maximize_order_the_right_way():
    assert Score(1.0, "minimize") > Score(2.0, "minimize")
    assert Score(2.0, "maximize") > Score(1.0, "maximize")


def test_failures_rank_below_every_real_value():
    worst_real = Score(1e300, "minimize")
    failures = (Score(None, "minimize"), Score(math.nan, "minimize"), Score(math.inf, "maximize"))
    for failed in failures:
        assert failed < worst_real


def test_a_crashed_result_scores_as_failure_even_with_metrics():
    crashed = VariantResult(variant_id="v", status=Status.CRASH, metrics={"loss": 0.0})
    assert Score.of(crashed, "loss", "minimize") == Score(None, "minimize")
    ok = VariantResult(variant_id="v", status=Status.OK, metrics={"loss": 3.0})
    assert Score.of(ok, "loss", "minimize") > Score.of(crashed, "loss", "minimize")

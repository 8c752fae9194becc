"""The noise floor is measured near the best and in proportion to a metric spanning decades."""

from __future__ import annotations

import random
import statistics

import pytest

from orchestrator.evolution.noise import NoiseFloor
from orchestrator.result import Status, VariantResult

from .fakes import FakeGenerator, FakeRunner, make_program, x_of
from .test_loop import evolve


def test_a_seed_far_from_the_best_gives_a_floor_in_proportion_not_its_own_spread():
    floor = NoiseFloor()
    floor.add("seed", [0.55, 0.34, 0.76])  # tiny's seed: mse spread ~0.21 between seeds
    spread = statistics.stdev([0.55, 0.34, 0.76])
    assert spread > 0.2
    near_best = floor.at(0.0023)
    assert near_best is not None and near_best < 0.0023, \
        "a floor of 0.21 beside a best of 0.0023 would call every near-best gain noise"
    assert floor.relative_at(0.0023) == pytest.approx(floor.relative_at(0.55), rel=1e-9)


def test_rechecks_near_the_best_replace_the_seed_spread_there():
    floor = NoiseFloor()
    floor.add("seed", [0.55, 0.34, 0.76])
    before = floor.at(0.0023)
    floor.add("child", [0.002300, 0.002302])  # a recheck near the best: tight
    after = floor.at(0.0023)
    assert after is not None and before is not None and after < before / 10
    assert floor.at(0.5) == pytest.approx(before / 0.0023 * 0.5, rel=1e-6), \
        "far from the child the seed's measurement still rules"


def test_a_declared_floor_is_believed_everywhere():
    floor = NoiseFloor(declared=0.07)
    floor.add("seed", [1.0, 5.0])
    assert floor.at(0.001) == 0.07 and floor.at(None) == 0.07


def test_a_metric_crossing_zero_keeps_an_absolute_floor():
    floor = NoiseFloor()
    floor.add("a", [-0.1, 0.1])
    floor.add("b", [0.9, 1.1])
    assert not floor.relative
    assert floor.at(1.0) == pytest.approx(statistics.stdev([-0.1, 0.1]))


def test_one_evaluation_says_nothing_of_noise():
    floor = NoiseFloor()
    floor.add("a", [1.0])
    floor.add("b", [float("nan"), 2.0])
    assert floor.at(1.0) is None


class RelativeNoiseRunner(FakeRunner):
    """``(X - 3)²`` times (1 + 20 % seeded noise): spread in proportion to the value."""

    def run(self, request) -> VariantResult:
        result = super().run(request)
        if result.status is not Status.OK:
            return result
        loss = (x_of(request.variant.files) - 3) ** 2
        loss *= 1 + 0.2 * random.Random(request.seed * 7919 + 1).gauss(0, 1)
        return result.model_copy(update={"metrics": {"loss": loss}})


def test_the_run_floor_follows_the_best_down_the_decades(tmp_path):
    program = make_program(tmp_path / "prog", noise=None)
    evo, out = evolve(tmp_path, RelativeNoiseRunner(), FakeGenerator(script=[2.0, 2.9, 2.99]),
                      program=program, **{"budget.variants": 3, "selection.noise_seeds": 3})
    seed_spread = statistics.stdev(e.metric for e in evo.store.evaluations(
        variant_id=evo.seed_id))
    assert out.best_value is not None and out.best_value < 0.02
    assert out.noise is not None and out.noise < out.best_value, \
        f"floor {out.noise} beside best {out.best_value} (the seed's spread was {seed_spread})"
    assert evo.store.run_info()["noise"] == pytest.approx(out.noise), "the stored floor lags"

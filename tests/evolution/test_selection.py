"""Selection: direction-aware ranking, failures worst, greedy vs elitist, noise-aware crowning,
and the slot plan that gives each slot its GPUs."""

from __future__ import annotations

import random

import pytest

from orchestrator.errors import ConfigError
from orchestrator.evolution.config import SlotsConfig
from orchestrator.evolution.selection import Candidate, Elitist, Greedy, Population, Verdict
from orchestrator.evolution.slots import plan_slots

from .fakes import make_program


def c(vid: str, value: float | None, evaluations: int = 1) -> Candidate:
    return Candidate(vid, value, evaluations, idx=int(vid[1:]) if vid[1:].isdigit() else 0)


def test_greedy_replaces_the_best_only_with_a_better_child():
    pop = Population(Greedy(), "minimize", k=0)
    assert pop.consider(c("v0", 5.0), None) is Verdict.ADMITTED
    assert pop.consider(c("v1", 6.0), None) is Verdict.REJECTED
    assert pop.consider(c("v2", 4.0), None) is Verdict.ADMITTED
    assert [m.variant_id for m in pop.members] == ["v2"]
    assert pop.pick(random.Random(0)).variant_id == "v2"


def test_a_failed_child_ranks_worst_whatever_the_direction():
    for goal in ("minimize", "maximize"):
        pop = Population(Greedy(), goal)
        pop.consider(c("v0", 1e9 if goal == "minimize" else -1e9), None)
        assert pop.consider(c("v1", None), None) is Verdict.REJECTED
        assert pop.best.variant_id == "v0"


def test_maximize_prefers_larger_values():
    pop = Population(Greedy(), "maximize")
    pop.consider(c("v0", 1.0), None)
    assert pop.consider(c("v1", 2.0), None) is Verdict.ADMITTED


def test_a_gain_smaller_than_k_noise_asks_for_a_recheck_then_is_judged_on_the_mean():
    pop = Population(Greedy(), "minimize", k=3.0, rechecks=1)
    pop.consider(c("v0", 1.00), 0.01)
    assert pop.consider(c("v1", 0.98, evaluations=1), 0.01) is Verdict.RECHECK
    assert pop.best.variant_id == "v0", "a recheck is not a crowning"
    assert pop.consider(c("v1", 0.985, evaluations=2), 0.01) is Verdict.ADMITTED
    assert pop.consider(c("v2", 0.90, evaluations=1), 0.01) is Verdict.ADMITTED  # clear gain


def test_elitist_keeps_the_best_few_and_samples_parents_by_tournament():
    pop = Population(Elitist(size=3, tournament=2), "minimize")
    for i, value in enumerate([5.0, 4.0, 3.0, 6.0, 1.0]):
        pop.consider(c(f"v{i}", value), None)
    assert sorted(m.variant_id for m in pop.members) == ["v1", "v2", "v4"]
    picks = {pop.pick(random.Random(s)).variant_id for s in range(40)}
    assert picks == {"v2", "v4"}, "the worst of three never wins a tournament of two"


def test_slots_follow_the_cores_on_a_cpu_host(tmp_path):
    program = make_program(tmp_path / "p")  # cpus = 1
    slots = plan_slots(SlotsConfig(), program, host_cpus=2, host_gpus=0)
    assert [(s.gpu_ids, s.cpus) for s in slots] == [((), 1.0), ((), 1.0)]
    assert len(plan_slots(SlotsConfig(count=1), program, 2, 0)) == 1


def test_each_slot_owns_its_own_gpus_on_a_gpu_host(tmp_path):
    program = make_program(tmp_path / "p")
    slots = plan_slots(SlotsConfig(), program, host_cpus=16, host_gpus=4)
    assert [s.gpu_ids for s in slots] == [(0,), (1,), (2,), (3,)]
    pairs = plan_slots(SlotsConfig(gpus_per_slot=2), program, 16, 4)
    assert [s.gpu_ids for s in pairs] == [(0, 1), (2, 3)]
    with pytest.raises(ConfigError, match="GPUs"):
        plan_slots(SlotsConfig(count=3, gpus_per_slot=2), program, 16, 4)

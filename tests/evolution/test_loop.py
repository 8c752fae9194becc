"""The evolve loop with fake runner and generator: selection, statuses, retries, noise, resume."""

from __future__ import annotations

import time
from collections import Counter
from pathlib import Path

import pytest

from orchestrator.evolution.config import load_config
from orchestrator.evolution.loop import Evolution
from orchestrator.evolution.slots import Slot
from orchestrator.result import Status
from orchestrator.runs.store import Store
from orchestrator.runs.summary import counts

from .fakes import FakeGenerator, FakeRunner, make_program, x_of


def evolve(tmp_path: Path, runner, generator, *, program=None, slots: int = 1, **over):
    program = program or make_program(tmp_path / "prog")
    over.setdefault("budget.variants", 8)
    cfg = load_config(None, {"program": str(program.root), **over})
    store = Store(tmp_path / "runs" / "r1", create=True)
    store.init_run(program.root, cfg.model_dump_json())
    evo = Evolution(cfg, store, program, runner, generator, [Slot(i) for i in range(slots)])
    return evo, evo.run()


def assert_counts_add_up(store: Store) -> None:
    c = counts(store)
    calls = c["calls"]
    assert calls.get("variant", 0) == c["variants"] - 1
    assert c["pending"] == 0
    pairs = Counter((e.variant_id, e.seed) for e in store.evaluations())
    assert max(pairs.values()) == 1, "a (variant, seed) pair was evaluated twice"
    assert {e.variant_id for e in store.evaluations()} == {v.id for v in store.variants()}


def test_greedy_climbs_towards_the_optimum_and_counts_add_up(tmp_path):
    runner = FakeRunner()
    evo, out = evolve(tmp_path, runner, FakeGenerator(step=0.5), **{"budget.variants": 6})
    assert out.best_value is not None and out.seed_value == pytest.approx(9.0)
    assert out.best_value < out.seed_value
    assert len(evo.store.variants()) == 7
    assert_counts_add_up(evo.store)
    # every generation after the first few used the best so far as its parent (greedy)
    best_parents = {r.parents[0].variant_id for r in evo.generator.requests}
    assert best_parents <= {v.id for v in evo.store.variants() if v.verdict == "admitted"}


def test_a_crashed_child_ranks_worst_and_the_loop_goes_on(tmp_path):
    runner = FakeRunner(crash_on={1.0})
    evo, out = evolve(tmp_path, runner, FakeGenerator(script=[1.0, 0.5]),
                      **{"budget.variants": 2})
    statuses = {x_of(v.files()): e.status for v in evo.store.variants()
                for e in evo.store.evaluations() if e.variant_id == v.id}
    assert statuses == {0.0: Status.OK, 1.0: Status.CRASH, 0.5: Status.OK}
    assert x_of(evo.files[out.best_id]) == 0.5
    assert_counts_add_up(evo.store)


def test_an_infra_error_is_retried_and_never_blamed_on_the_variant(tmp_path):
    runner = FakeRunner(infra_on={1.0}, infra_times=1)
    evo, out = evolve(tmp_path, runner, FakeGenerator(script=[1.0]), **{"budget.variants": 1})
    assert x_of(evo.files[out.best_id]) == 1.0
    ev = [e for e in evo.store.evaluations() if e.variant_id == out.best_id]
    assert len(ev) == 1 and ev[0].status is Status.OK and ev[0].attempts == 2


def test_an_infra_error_past_its_retries_is_recorded_and_never_selected(tmp_path):
    runner = FakeRunner(infra_on={2.0}, infra_times=99)
    evo, out = evolve(tmp_path, runner, FakeGenerator(script=[2.0]),
                      **{"budget.variants": 1, "slots.infra_retries": 2})
    bad = next(v for v in evo.store.variants() if x_of(v.files()) == 2.0)
    (ev,) = [e for e in evo.store.evaluations() if e.variant_id == bad.id]
    assert ev.status is Status.INFRA_ERROR and ev.attempts == 3
    assert out.best_id != bad.id and bad.verdict == "rejected"


def test_a_gain_inside_the_noise_is_rechecked_with_another_seed_before_it_is_crowned(tmp_path):
    program = make_program(tmp_path / "prog", x=0.0, noise=1.0)
    runner = FakeRunner()
    # 0.1 → loss 8.41: beats 9.0 by 0.59 < 2 × 1.0; 2.5 → 0.25 beats it by far
    evo, out = evolve(tmp_path, runner, FakeGenerator(script=[0.1, 2.5]), program=program,
                      **{"budget.variants": 2, "selection.k": 2.0})
    small = next(v for v in evo.store.variants() if x_of(v.files()) == 0.1)
    big = next(v for v in evo.store.variants() if x_of(v.files()) == 2.5)
    seeds = lambda vid: sorted(s for v, s, _g, _c in runner.calls if v == vid)  # noqa: E731
    assert seeds(small.id) == [0, 1]
    assert [e.purpose for e in evo.store.evaluations() if e.variant_id == small.id] == [
        "first", "recheck"]
    assert seeds(big.id) == [0] or out.best_id == big.id


def test_the_noise_floor_is_measured_at_the_start_when_the_program_does_not_know_it(tmp_path):
    program = make_program(tmp_path / "prog", noise=None)
    runner = FakeRunner(noise=0.2)
    evo, out = evolve(tmp_path, runner, FakeGenerator(), program=program,
                      **{"budget.variants": 1, "selection.noise_seeds": 3})
    seed = evo.store.variants()[0]
    assert [e.seed for e in evo.store.evaluations() if e.variant_id == seed.id] == [0, 1, 2]
    assert out.noise is not None and 0.01 < out.noise < 1.0


def test_a_duplicate_proposal_is_recorded_and_not_evaluated_again(tmp_path):
    runner = FakeRunner()
    evo, _ = evolve(tmp_path, runner, FakeGenerator(script=[1.0, 1.0, 0.0, 2.0]),
                    **{"budget.variants": 2})
    assert Counter(c["outcome"] for c in evo.store.calls()) == {"variant": 2, "duplicate": 2}
    assert len(runner.calls) == 3
    assert_counts_add_up(evo.store)


def test_maximize_goal_keeps_the_larger_metric(tmp_path):
    program = make_program(tmp_path / "prog", goal="maximize", x=3.0)
    evo, out = evolve(tmp_path, FakeRunner(), FakeGenerator(script=[5.0, 3.5]), program=program,
                      **{"budget.variants": 2})
    assert x_of(evo.files[out.best_id]) == 5.0


def test_elitist_population_keeps_the_best_few(tmp_path):
    evo, out = evolve(tmp_path, FakeRunner(), FakeGenerator(step=0.5),
                      **{"budget.variants": 10, "selection.strategy": "elitist",
                         "selection.population": 3})
    assert len(evo.population.members) == 3
    assert out.best_id == evo.population.best.variant_id
    values = sorted(m.value for m in evo.population.members)
    others = [v.value for v in evo.store.variants()
              if v.value is not None and v.id not in {m.variant_id for m in evo.population.members}]
    assert all(o >= values[-1] for o in others)


def test_two_slots_run_two_variants_at_once_and_generation_runs_ahead(tmp_path):
    runner = FakeRunner(delay=0.3)
    t0 = time.monotonic()
    evo, out = evolve(tmp_path, runner, FakeGenerator(), slots=2, **{"budget.variants": 5})
    wall = time.monotonic() - t0
    assert wall < 6 * 0.3 * 0.8, "six 0.3 s evaluations on two slots took serial time"
    assert out.utilisation > 0.6
    assert_counts_add_up(evo.store)


def test_the_wall_time_budget_stops_starting_evaluations(tmp_path):
    runner = FakeRunner(delay=0.2)
    t0 = time.monotonic()
    evo, out = evolve(tmp_path, runner, FakeGenerator(),
                      **{"budget.variants": None, "budget.wall_time_s": 1.0})
    assert out.reason == "wall time"
    assert time.monotonic() - t0 < 1.0 + 0.5


class Bug(RuntimeError):
    pass


class BreaksOnce(FakeRunner):
    def __init__(self, at: int):
        super().__init__()
        self.at = at

    def run(self, request):
        if len(self.calls) == self.at:
            self.calls.append(("bug", 0, (), None))
            raise Bug("runner bug")
        return super().run(request)


def test_a_run_stopped_by_a_bug_resumes_without_losing_or_repeating_a_variant(tmp_path):
    program = make_program(tmp_path / "prog")
    cfg = load_config(None, {"program": str(program.root), "budget.variants": 6})
    store = Store(tmp_path / "runs" / "r1", create=True)
    store.init_run(program.root, cfg.model_dump_json())
    first = BreaksOnce(at=3)
    with pytest.raises(Bug):
        Evolution(cfg, store, program, first, FakeGenerator(), [Slot(0)]).run()
    proposed = {v.id for v in store.variants()}
    recorded = {(e.variant_id, e.seed) for e in store.evaluations("done")}
    assert store.evaluations("pending"), "the bug should have left work pending"
    second = FakeRunner()
    again = Store(tmp_path / "runs" / "r1")
    out = Evolution(cfg, again, program, second, FakeGenerator(seed=1), [Slot(0)]).run()
    assert proposed <= {v.id for v in again.variants()}
    assert not recorded & {(v, s) for v, s, _g, _c in second.calls}, "recorded work re-ran"
    assert_counts_add_up(again)
    assert out.best_id is not None


class SelfFake(FakeGenerator):
    """Stands in for the ``self`` backend: it is told where each new best's model is."""

    def __init__(self, **kw):
        super().__init__(**kw)
        self.used: list[Path] = []

    def use(self, folder) -> None:
        self.used.append(Path(folder))


def test_a_self_generator_switches_to_each_new_best_variants_artifacts(tmp_path):
    gen = SelfFake(script=[1.0, 0.5, 2.0])
    evo, out = evolve(tmp_path, FakeRunner(), gen, **{"budget.variants": 3})
    crowned = [v for v in evo.store.variants() if v.verdict == "admitted"]
    assert gen.used[-1] == evo.store.variant(out.best_id).folder / "eval-0" / "artifacts"
    assert len(gen.used) == len(crowned) == 3  # the seed, then X = 1.0, then X = 2.0


class Silent(FakeGenerator):
    def propose(self, request):
        self.requests.append(request)
        return []


def test_a_generator_that_returns_nothing_ends_the_run_instead_of_spinning(tmp_path):
    evo, out = evolve(tmp_path, FakeRunner(), Silent(), **{"budget.max_rejections": 5})
    assert out.reason == "generator gave no new variant in 5 calls"
    assert len(evo.generator.requests) == 5
    assert out.best_id == evo.seed_id


class Spy:
    """Stands in for the store and counts which of its methods the loop calls."""

    def __init__(self, store: Store):
        self.store = store
        self.used: Counter[str] = Counter()

    def __getattr__(self, name: str):
        attr = getattr(self.store, name)
        if callable(attr):
            self.used[name] += 1
        return attr


WRITES = ("set_run", "add_variant", "add_call", "finish_evaluation", "retry_evaluation",
          "set_verdict", "mark_collected")


def test_the_loop_never_reads_a_table_back_to_find_what_it_just_wrote(tmp_path, monkeypatch):
    import orchestrator.runs.store as store_module

    transactions = Counter()
    monkeypatch.setattr(store_module, "checkpoint", lambda name: transactions.update([name]))
    program = make_program(tmp_path / "prog", x=0.0, noise=1.0)
    cfg = load_config(None, {"program": str(program.root), "budget.variants": 3,
                             "selection.k": 2.0})
    store = Store(tmp_path / "runs" / "r1", create=True)
    store.init_run(program.root, cfg.model_dump_json())
    transactions.clear()
    spy = Spy(store)
    gen = FakeGenerator(script=[0.1, 0.1, 2.5, 2.0])  # rechecked, a duplicate, two more
    runner = FakeRunner(infra_on={2.5}, infra_times=1)
    out = Evolution(cfg, spy, program, runner, gen, [Slot(0)]).run()
    evals = store.evaluations()
    rechecks = [e.purpose for e in evals].count("recheck")
    assert rechecks >= 1 and out.best_id is not None
    used = spy.used
    # a fresh run reads the variants once (to know it is fresh) and no table ever again
    assert used["variants"] == 1
    assert used["evaluations"] == used["evaluation"] == used["calls"] == 0
    assert used["variant"] <= 1  # the seed's row, for the outcome
    assert used["seen_hashes"] == used["call_count"] == len(gen.requests)
    # one transaction records a result, one more the verdict (and its recheck)
    assert used["finish_evaluation"] == len(evals)
    assert used["retry_evaluation"] == 1
    assert used["set_verdict"] == len(store.variants()) + rechecks  # before and after each
    assert transactions["store-write"] == sum(used[w] for w in WRITES)


class Raises(FakeGenerator):
    def propose(self, request):
        self.requests.append(request)
        raise Bug("generator bug")


def test_a_generator_that_raises_stops_the_run_and_is_not_recorded_as_a_call(tmp_path):
    with pytest.raises(Bug):
        evolve(tmp_path, FakeRunner(), Raises())
    store = Store(tmp_path / "runs" / "r1")
    assert store.calls() == [], "a bug in a generator is not a generation call"
    program = make_program(tmp_path / "prog")
    cfg = load_config(None, {"program": str(program.root), "budget.variants": 2})
    out = Evolution(cfg, store, program, FakeRunner(), FakeGenerator(), [Slot(0)]).run()
    assert out.best_id is not None
    assert_counts_add_up(store)

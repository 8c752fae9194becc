"""What the loop tells the generator: the parent's curve and costs, changes already tried with
their outcome, failures with their traceback, the run's terms, a turning focus; and runs that
start from a task's spec alone (``from_spec``). Fakes for the runner and generator: the point
here is what the loop reads and hands over."""

from __future__ import annotations

import json
from pathlib import Path

from orchestrator.evolution import feedback
from orchestrator.evolution.config import load_config
from orchestrator.evolution.loop import Evolution
from orchestrator.evolution.slots import Slot
from orchestrator.generators.base import GenerationCall, GenerationRequest, Proposal
from orchestrator.result import StageResult, Status
from orchestrator.runs.store import Store
from tests.evolution.fakes import FakeGenerator, FakeRunner, make_program, x_of

TRACEBACK = ("[stderr] Traceback (most recent call last):\n"
             '[stderr]   File "/program/train.py", line 12, in <module>\n'
             "[stderr]     model = build(WIDTH)\n"
             "[stderr] NameError: name 'build' is not defined\n")


class Telling(FakeRunner):
    """Writes what a real TRAIN leaves: progress events, a log; a crash prints a traceback."""

    def run(self, request):
        result = super().run(request)
        x = x_of(request.variant.files)
        with (request.folder / "events.jsonl").open("w") as f:
            for step in range(0, 100, 5):
                f.write(json.dumps({"stage": "train", "type": "progress", "step": step,
                                    "metrics": {"loss": 5.0 - step / 50, "lr": 0.001}}) + "\n")
        log = "[stdout] starting\n" * 30 + (TRACEBACK if x in self.crash_on else "")
        (request.folder / "train.log").write_text(log)
        if result.status is Status.OK:
            result.stages[0] = StageResult(stage="train", status=Status.OK, duration_s=41.5,
                                           peak_memory_bytes=300 * 1024**2)
            result.metrics["params"] = 1234.0
        return result


def run(tmp_path: Path, runner, generator, **over):
    program = make_program(tmp_path / "prog", noise=0.05)
    over.setdefault("budget.variants", 6)
    over.setdefault("slots.lookahead", 0)  # one proposal per finished evaluation: in order
    cfg = load_config(None, {"program": str(program.root), **over})
    store = Store(tmp_path / "runs" / "r1", create=True)
    store.init_run(program.root, cfg.model_dump_json())
    evo = Evolution(cfg, store, program, runner, generator, [Slot(0)])
    return evo, evo.run(), store


def test_a_crashed_childs_traceback_and_change_reach_the_next_request(tmp_path):
    gen = FakeGenerator(script=[7.0, 2.0, 2.5, 2.8])
    run(tmp_path, Telling(crash_on={7.0}), gen, **{"budget.variants": 4})
    later = gen.requests[1]
    (crash,) = [f for f in later.failures if f.status == "crash"]
    assert "NameError: name 'build' is not defined" in crash.log_tail
    assert crash.log_tail.startswith("Traceback"), "the tail starts at the traceback"
    assert "[stderr]" not in crash.log_tail
    assert "+X = 7.0" in crash.diff


def test_changes_tried_from_the_parent_come_with_their_outcome_worse_ones_included(tmp_path):
    # the seed X=0 scores 9: X=6.5 is worse (12.25), X=7 crashes
    gen = FakeGenerator(script=[6.5, 7.0, 1.0])
    run(tmp_path, Telling(crash_on={7.0}), gen, **{"budget.variants": 3})
    last = gen.requests[-1]
    assert last.parents[0].variant_id == gen.requests[0].parents[0].variant_id
    outcomes = {t.diff.splitlines()[-1]: (t.outcome, t.value) for t in last.tried}
    assert outcomes == {"+X = 6.5": ("worse", 12.25), "+X = 7.0": ("crash", None)}


def test_an_outcome_within_the_noise_floor_is_called_so():
    from orchestrator.runs.rows import VariantRecord, VariantRow

    row = VariantRow("c", 1, "p", Path("."), "", "", 0.0, False, "rejected", 9.03)
    record = VariantRecord(row, ())
    assert feedback._outcome(record, "minimize", 9.0, 0.05) == "within noise"
    assert feedback._outcome(record, "minimize", 9.0, 0.01) == "worse"
    assert feedback._outcome(record, "maximize", 9.0, 0.01) == "better"
    assert feedback._outcome(None, "minimize", 9.0, 0.01) == "running"


def test_the_parent_comes_with_its_curve_and_costs_and_the_request_with_the_runs_terms(tmp_path):
    gen = FakeGenerator(script=[1.0, 2.0, 2.5])
    run(tmp_path, Telling(), gen, **{"budget.variants": 3})
    later = gen.requests[-1]
    profile = later.parents[0].profile
    assert profile is not None and len(profile.curve) == feedback.CURVE_POINTS
    assert profile.curve[0][0] == 0 and profile.curve[-1][0] == 95, "first and last kept"
    assert dict(profile.metrics)["params"] == 1234.0
    assert profile.train_s == 41.5 and profile.peak_memory_bytes == 300 * 1024**2
    facts = later.facts
    assert facts is not None and facts.noise == 0.05 and facts.cpus == 1
    assert "CPU-seconds" in facts.budget_counts and facts.budget_s > 0


def test_the_focus_turns_with_every_call(tmp_path):
    gen = FakeGenerator(script=[1.0, 2.0, 2.5, 2.7])
    run(tmp_path, Telling(), gen, **{"budget.variants": 4})
    foci = [r.focus for r in gen.requests]
    assert foci[:3] == list(feedback.FOCI) and foci[3] == feedback.FOCI[0]


def test_rejected_answers_reach_the_next_request_with_their_reason(tmp_path):
    class RejectsFirst(FakeGenerator):
        def propose(self, request):
            if not self.requests:
                self.requests.append(request)
                call = GenerationCall("fake", "m", "p", "garbage")
                return [Proposal(request.parents[0].variant_id, None, call,
                                 rejection="no_match: SEARCH text found nowhere in train.py")]
            return super().propose(request)

    gen = RejectsFirst(script=[1.0, 2.0])
    run(tmp_path, Telling(), gen, **{"budget.variants": 2})
    reasons = [f.error_tail for f in gen.requests[1].failures if f.status.startswith("rejected")]
    assert reasons == ["no_match: SEARCH text found nowhere in train.py"]


class Drafts:
    """Writes whole programs from the spec (no parent) and edits once there is one."""

    name = "openai"

    def __init__(self, drafts: list[float], edits: list[float]):
        self.drafts, self.edits = list(drafts), list(edits)
        self.requests: list[GenerationRequest] = []

    def propose(self, request):
        self.requests.append(request)
        if not request.parents:
            x = self.drafts.pop(0) if self.drafts else 9.0
            call = GenerationCall("openai", "m", "write it", f"X = {x}")
            return [Proposal(None, {"train.py": f"X = {x}\n"}, call)]
        parent = request.parents[0]
        x = self.edits.pop(0) if self.edits else x_of(parent.files) + 0.1
        call = GenerationCall("openai", "m", "edit it", f"X = {x}")
        return [Proposal(parent.variant_id, {"train.py": f"X = {x}\n"}, call)]


def test_from_spec_never_runs_the_reference_and_builds_on_the_drafts_that_run_ok(tmp_path):
    gen = Drafts(drafts=[7.0, 1.0], edits=[2.0, 2.9])
    runner = Telling(crash_on={7.0})
    evo, out, store = run(tmp_path, runner, gen, from_spec=True, **{"budget.variants": 4})
    seed = store.variants()[0]
    assert seed.value is None and store.evaluations(variant_id=seed.id) == [], \
        "the shipped reference is never evaluated"
    assert all(x_of({"train.py": f"X = {0.0}"}) != x for x in [7.0, 1.0])
    assert [bool(r.parents) for r in gen.requests[:2]] == [False, False]
    assert all(r.from_spec for r in gen.requests if not r.parents)
    edits = [r for r in gen.requests if r.parents]
    assert edits, "once a draft ran ok, the run goes on from it"
    drafted = {v.id for v in store.variants()[1:] if v.parent_id is None}
    assert {r.parents[0].variant_id for r in edits} <= drafted | {
        v.id for v in store.variants() if v.parent_id in drafted}
    kinds = [c["kind"] for c in store.calls()]
    assert kinds[:2] == ["spec", "spec"], "several independent first drafts (slots + lookahead)"
    assert kinds.count("spec") == len([r for r in gen.requests if not r.parents])
    assert out.best_value is not None and out.best_value < (1.0 - 3) ** 2 + 1e-9


def test_from_spec_is_refused_for_a_backend_that_only_edits_and_for_a_plain_program(tmp_path):
    import pytest

    from orchestrator.errors import ConfigError
    from orchestrator.evolution.launch import check_from_spec

    program = make_program(tmp_path / "prog")
    cfg = load_config(None, {"program": str(program.root), "from_spec": True})
    with pytest.raises(ConfigError, match="task.toml"):
        check_from_spec(cfg, program, "openai")
    (program.root / "task.toml").write_text("[task]\n")
    with pytest.raises(ConfigError, match="hf or openai"):
        check_from_spec(cfg, program, "mutate")
    check_from_spec(cfg, program, "openai")

"""Settings declared ``gpu`` (they act on CUDA only) are left alone on a run without GPUs: by
``mutate``, by the ``self`` holes, and the loop tells generators how many GPUs a slot has."""

from __future__ import annotations

from pathlib import Path

from orchestrator.evolution.config import load_config
from orchestrator.evolution.loop import Evolution
from orchestrator.evolution.slots import Slot
from orchestrator.generators.base import GenerationRequest, Parent, RunFacts
from orchestrator.generators.config import CodeLMConfig, GeneratorConfig
from orchestrator.generators.mutate import MutateGenerator
from orchestrator.generators.searchspace import find_settings, for_device
from orchestrator.generators.selfgen import SelfGenerator
from orchestrator.program import Program
from orchestrator.runs.store import Store

from ..evolution.fakes import FakeGenerator, FakeRunner, make_program

ROOT = Path(__file__).resolve().parents[2]
CODELM = Program.load(ROOT / "programs" / "codelm")
GPU_ONLY = {"AUTOCAST_BF16", "COMPILE", "GPU_BATCH_MAX_SCALE", "GPU_GROW_GAIN", "LR_BATCH_SCALING"}


def facts(gpus: int) -> RunFacts:
    return RunFacts(budget_s=60, budget_counts="", memory_bytes=1 << 30, cpus=2, gpus=gpus,
                    noise=None)


def changed(before: str, after: str) -> set[str]:
    old = {s.name: s.value for s in find_settings("train.py", before)}
    return {s.name for s in find_settings("train.py", after) if old[s.name] != s.value}


def test_the_declaration_marks_exactly_codelms_cuda_only_settings():
    settings = find_settings("train.py", CODELM.source_files()["train.py"])
    assert {s.name for s in settings if s.gpu} == GPU_ONLY
    assert len([s for s in settings if not s.gpu]) == 14
    text = ("A = 1  # search: int[1, 4]  gpu\nB = 2  # search: int[1, 4]\n"
            "C = 3  # search: int[1, 4] gpux\n")
    flags = {s.name: s.gpu for s in find_settings("m.py", text)}
    assert flags == {"A": True, "B": False, "C": False}


def test_without_gpus_only_the_gpu_settings_are_dropped_unless_they_are_all_there_is():
    both = find_settings("m.py", "A = 1  # search: int[1, 4] gpu\nB = 2  # search: int[1, 4]\n")
    assert [s.name for s in for_device(both, 0)] == ["B"]
    assert [s.name for s in for_device(both, 1)] == ["A", "B"]
    assert [s.name for s in for_device(both, None)] == ["A", "B"]  # not known: all of them
    only = [s for s in both if s.gpu]
    assert for_device(only, 0) == only


def test_mutate_never_changes_a_gpu_setting_on_a_run_without_gpus():
    seed = CODELM.source_files()["train.py"]
    parent = Parent("", CODELM.source_files())
    gen = MutateGenerator()

    def touched(gpus: int) -> set[str]:
        out: set[str] = set()
        for s in range(60):
            for p in gen.propose(GenerationRequest(CODELM, (parent,), n=1, seed=s,
                                                   facts=facts(gpus))):
                assert p.valid, p.rejection
                out |= changed(seed, p.files["train.py"])
        return out

    assert not touched(0) & GPU_ONLY
    assert touched(1) & GPU_ONLY, "with a GPU the GPU settings are part of the space"


class Uniform:
    """A completer that scores every candidate alike (the holes are then drawn uniformly)."""

    context = 4096

    def complete_many(self, requests):
        return ["" for _ in requests]

    def score_many(self, requests):
        return [[-1.0] * len(r.continuations) for r in requests]


def test_self_holes_never_open_on_a_gpu_setting_on_a_run_without_gpus():
    seed = CODELM.source_files()["train.py"]
    parent = Parent("", CODELM.source_files())
    config = GeneratorConfig(temperature=1.0, codelm=CodeLMConfig(hole_fraction=1.0))
    gen = SelfGenerator(config, Uniform(), load=lambda f: Uniform())

    def touched(gpus: int) -> set[str]:
        out: set[str] = set()
        for p in gen.propose(GenerationRequest(CODELM, (parent,), n=40, seed=1,
                                               facts=facts(gpus))):
            assert p.valid, p.rejection
            out |= changed(seed, p.files["train.py"])
        return out

    assert not touched(0) & GPU_ONLY
    assert touched(2) & GPU_ONLY


def test_the_loop_tells_the_generator_the_gpus_of_its_slots(tmp_path):
    for slots, want in (([Slot(0), Slot(1)], 0), ([Slot(0, (0, 1)), Slot(1, (2, 3))], 2)):
        program = make_program(tmp_path / f"prog{want}")
        cfg = load_config(None, {"program": str(program.root), "budget.variants": 2})
        store = Store(tmp_path / f"runs{want}" / "r1", create=True)
        store.init_run(program.root, cfg.model_dump_json())
        gen = FakeGenerator()
        Evolution(cfg, store, program, FakeRunner(), gen, slots).run()
        assert gen.requests and {r.facts.gpus for r in gen.requests} == {want}

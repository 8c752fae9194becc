"""codelm's batch growth on a GPU, its decision logic driven by a simulated clock (no GPU here;
the real thing runs in tests/programs/test_codelm_gpu.py on a CUDA machine)."""

from __future__ import annotations

import importlib.util

import pytest

from tests.programs.test_codelm_program import CODELM


@pytest.fixture
def train(monkeypatch):
    spec = importlib.util.spec_from_file_location("codelm_train_grow", CODELM / "train.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    monkeypatch.setattr(module.torch.cuda, "synchronize", lambda: None)
    monkeypatch.setattr(module.report, "log", lambda text: None)
    return module


def drive(monkeypatch, train, grow, step_s, steps: int = 200) -> list[int]:
    """Run ``steps`` steps whose duration ``step_s(batch)`` gives; the batch sizes seen."""
    now = [0.0]
    monkeypatch.setattr(train.time, "monotonic", lambda: now[0])
    seen = []
    for _ in range(steps):
        now[0] += step_s(grow.batch)
        seen.append(grow.batch)
        grow.record(grow.batch * 128)
    return seen


def test_the_batch_doubles_while_throughput_grows_then_stays(train, monkeypatch):
    grow = train.Grow(32, 64)
    # launch-bound up to 512 sequences (each step costs the same), then slower than linear
    seen = drive(monkeypatch, train, grow, lambda b: 0.01 * max(1.0, (b / 512) ** 1.2))
    assert grow.done and grow.batch == 512
    assert seen[0] == 32 and seen[-1] == 512 and sorted(set(seen)) == [32, 64, 128, 256, 512,
                                                                       1024]
    assert grow.lr_factor() == pytest.approx((512 / 32) ** 0.5)


def test_the_batch_stops_at_the_cap_and_a_cpu_never_grows(train, monkeypatch):
    grow = train.Grow(32, 4)
    drive(monkeypatch, train, grow, lambda b: 0.01)
    assert grow.done and grow.batch == 128
    cpu = train.Grow(32, 1)
    drive(monkeypatch, train, cpu, lambda b: 0.01 * b)
    assert cpu.batch == 32 and cpu.lr_factor() == 1.0 and not cpu.shrink()


def test_out_of_memory_while_growing_falls_back_to_the_last_size(train, monkeypatch):
    grow = train.Grow(32, 64)
    drive(monkeypatch, train, grow, lambda b: 0.01, steps=25)  # grown past 32, still growing
    before = grow.batch
    assert before > 32 and not grow.done
    assert grow.shrink() and grow.batch == before // 2 and grow.done
    assert not grow.shrink()  # a later OOM at the settled size is a real one

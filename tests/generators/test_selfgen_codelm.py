"""``selfprog evolve --generator self`` on codelm itself: the program's model writes children,
one is crowned, and its own export writes the next ones (real engine, real codelm)."""

from __future__ import annotations

import re
import shutil
import time
from pathlib import Path

import pytest

from orchestrator.generators.testing import export_tiny

ROOT = Path(__file__).resolve().parents[2]


def poor_codelm(root: Path) -> Path:
    """A test copy of codelm that trains for 10 s and is scored on 8 KiB, whose only declared
    setting is a learning rate set to the bottom of its range: at 1e-4 a few seconds teach the
    model next to nothing, so whatever rate the self writes in, its child learns more.

    Not 3 s: the budget runs on CPU time with a wall-clock cap of 3x, and under a load of 20
    on 2 cores 9 s of wall clock went by before the first step, so seed and child exported the
    same untrained model and scored the same."""
    shutil.copytree(ROOT / "programs" / "codelm", root)
    train = (root / "train.py").read_text()
    train = re.sub(r"  # search: .*", "", train)  # nothing else for a hole to land on
    train = train.replace("LEARNING_RATE = 3e-4", "LEARNING_RATE = 1e-4  # search: log[1e-4, 3e-2]")
    (root / "train.py").write_text(train + f"# {time.time()}\n")  # new images each run
    evaluate = (root / "evaluate.py").read_text()
    evaluate = evaluate.replace("EVAL_BYTES = 98_304", "EVAL_BYTES = 8_192").replace(
        "N_LINES = 64", "N_LINES = 4")
    (root / "evaluate.py").write_text(evaluate)
    toml = (root / "program.toml").read_text().replace('name = "codelm"',
                                                       'name = "codelm-selftest"')
    (root / "program.toml").write_text(toml.replace("time_budget_s = 60", "time_budget_s = 10"))
    for path in [root, *root.rglob("*")]:  # the sandbox user reads the copy
        path.chmod(0o755 if path.is_dir() else 0o644)
    return root


@pytest.mark.docker
@pytest.mark.slow
@pytest.mark.long
def test_evolving_codelm_with_its_own_model_crowns_a_child_it_wrote(tmp_path, docker_client,
                                                                   runtime_image):
    from typer.testing import CliRunner

    from orchestrator.cli.app import app
    from orchestrator.runs.store import Store

    program = poor_codelm(tmp_path / "codelm")
    start = export_tiny(tmp_path / "start", seed=2, context=64)
    for path in [start, *start.iterdir()]:
        path.chmod(0o755 if path.is_dir() else 0o644)
    runs = tmp_path / "runs"
    try:
        done = CliRunner().invoke(app, [
            "evolve", "--program", str(program), "--variants", "4", "--generator", "self",
            "--run-id", "selfcodelm", "--set", f'runs_dir="{runs}"',
            "--set", f'generator.codelm.model="{start}"',
            "--set", "generator.codelm.hole_fraction=1.0"])
        assert done.exit_code == 0, done.output
        store = Store(runs / "selfcodelm")
        calls = store.calls()
        assert calls and all(c["backend"] == "self" for c in calls)
        written = {c["variant_id"]: c["generator"] for c in calls if c["variant_id"]}
        admitted = [v for v in store.variants() if v.verdict == "admitted"]
        assert any(v.id in written for v in admitted), "no child written by the self crowned"
        assert {w for w in written.values() if w} <= {v.id for v in admitted}
        page = (runs / "selfcodelm" / "report.html").read_text()
        assert 'id="written-by"' in page and "the given model" in page
        assert not docker_client.containers.list(all=True,
                                                 filters={"label": "selfprog.run=selfcodelm"})
    finally:
        for image in docker_client.images.list(filters={"label": "selfprog.role=variant"}):
            if any(t.startswith("selfprog-variant:codelm-selftest-") for t in image.tags):
                for tag in image.tags:
                    docker_client.images.remove(tag, noprune=False)

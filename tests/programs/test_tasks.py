"""Task specs, the shipped task data, the codelm corpus, and the `new-task` scaffold."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from orchestrator.errors import ConfigError
from orchestrator.task import Task, discover
from orchestrator.task_scaffold import new_task
from tests.sandbox.serving import serving
from tools import corpus, taskdata

ROOT = Path(__file__).resolve().parents[2]
CODELM_DATA = ROOT / "programs" / "codelm" / "data"


def test_every_shipped_task_loads_with_a_reference_and_a_prompt_naming_its_metric():
    tasks = {t.name: t for t in discover()}
    assert {"digits", "diabetes", "sorting"} <= set(tasks)
    for task in tasks.values():
        assert task.spec.reference == "train.py"
        prompt = task.prompt()
        assert task.program.manifest.metric.name in prompt
        assert "model.pt" in prompt and "SELFPROG_DATA" in prompt


def test_a_misspelt_task_key_is_an_error_naming_it(tmp_path):
    root = new_task(tmp_path, "typo")
    text = (root / "task.toml").read_text().replace("export =", "exprot =")
    (root / "task.toml").write_text(text)
    with pytest.raises(ConfigError, match="exprot"):
        Task.load(root)


def test_sorting_data_is_what_its_seeds_generate_and_held_out_rows_are_unseen():
    (train_x, train_y), (held_x, held_y) = taskdata.sorting_parts()
    folder = ROOT / "programs" / "tasks" / "sorting" / "data"
    for (x, y), part in (((train_x, train_y), "train"), ((held_x, held_y), "heldout")):
        shipped_x, shipped_y = taskdata.load(folder / part, "sorting")
        assert np.array_equal(shipped_x, x) and np.array_equal(shipped_y, y)
        assert np.array_equal(np.sort(shipped_x, axis=1), shipped_y)
    assert not {r.tobytes() for r in train_x} & {r.tobytes() for r in held_x}


@pytest.mark.parametrize("task,name,n", [("digits", "digits", 1797), ("diabetes", "diabetes", 442)])
def test_public_datasets_are_split_without_overlap(task, name, n):
    folder = ROOT / "programs" / "tasks" / task / "data"
    train_x, _ = taskdata.load(folder / "train", name)
    held_x, _ = taskdata.load(folder / "heldout", name)
    assert len(train_x) + len(held_x) == n
    assert len(held_x) == round(0.2 * n)


def test_shipped_codelm_corpus_matches_its_record_and_no_file_is_in_both_parts():
    record = json.loads((CODELM_DATA / "corpus.json").read_text())
    for part in ("train", "heldout"):
        text = corpus.read_part(CODELM_DATA / part)
        assert hashlib.sha256(text).hexdigest() == record["parts"][part]["sha256"]
        assert len(text) == record["parts"][part]["bytes"]
    names = {p: {f[0] for f in record["parts"][p]["files"]} for p in ("train", "heldout")}
    assert names["train"] and names["heldout"] and not names["train"] & names["heldout"]


def test_corpus_selection_is_deterministic_and_splits_by_file(tmp_path):
    for i in range(60):
        (tmp_path / f"test_mod{i}.py").write_text(f"# file {i}\n" + f"x_{i} = {i}\n" * 300)
    (tmp_path / "test_tiny.py").write_text("pass\n")  # under MIN_BYTES: left out
    first, second = corpus.select(tmp_path), corpus.select(tmp_path)
    assert first["train"].sha256 == second["train"].sha256
    assert first["heldout"].sha256 == second["heldout"].sha256
    train = {n for n, _ in first["train"].files}
    held = {n for n, _ in first["heldout"].files}
    assert held and train and not train & held and "test_tiny.py" not in train | held
    for name in held:  # a held-out file's text appears only in the held-out part
        assert (tmp_path / name).read_bytes() not in first["train"].text


def _bare(script: Path, env: dict[str, str]) -> list[dict]:
    full = {**os.environ, "PYTHONPATH": str(ROOT), "SELFPROG_SEED": "0", **env}
    done = subprocess.run([sys.executable, str(script)], cwd=script.parent, env=full,
                          capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stderr[-2000:]
    return [json.loads(line) for line in done.stdout.splitlines() if line.startswith("{")]


@pytest.mark.slow
@pytest.mark.parametrize("kind,metric", [("classification", "accuracy"), ("regression", "rmse")])
def test_a_scaffolded_task_runs_as_it_is_once_given_data(tmp_path, kind, metric):
    root = new_task(tmp_path, "demo", kind)
    task = Task.load(root)
    assert task.program.manifest.metric.name == metric
    rng = np.random.default_rng(0)
    for part, n in (("train", 400), ("heldout", 100)):
        x = rng.normal(size=(n, 5)).astype(np.float32)
        y = (x[:, 0] > 0).astype(np.int64) if kind == "classification" else 3 * x[:, 0]
        np.savez(root / "data" / part / "data.npz", x=x, y=y)
    out = tmp_path / "out"
    _bare(root / "train.py", {"SELFPROG_OUT": str(out), "SELFPROG_DATA": str(root / "data/train"),
                              "SELFPROG_TIME_BUDGET_S": "60"})  # EPOCHS ends it first
    assert (root / "serve.py").is_file(), "a scaffolded task uses the split evaluation"
    with serving(root, out, tmp_path / "model.sock") as env:
        msgs = _bare(root / "evaluate.py", {**env, "SELFPROG_DATA": str(root / "data/heldout")})
    value = [m for m in msgs if m["type"] == "result"][0]["metrics"][metric]
    assert value > 0.9 if kind == "classification" else value < 1.5  # target's std is 3


def test_new_task_command_scaffolds_once_and_refuses_to_overwrite(tmp_path):
    from typer.testing import CliRunner

    from orchestrator.cli.app import app

    cli = CliRunner()
    args = ["new-task", "mytask", "--kind", "regression", "--parent", str(tmp_path)]
    first = cli.invoke(app, args)
    assert first.exit_code == 0, first.output
    assert Task.load(tmp_path / "mytask").program.manifest.metric.goal == "minimize"
    again = cli.invoke(app, ["new-task", "mytask", "--parent", str(tmp_path)])
    assert again.exit_code == 2 and "already exists" in again.output

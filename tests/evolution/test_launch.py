"""Starting and reopening a run: atomic creation, a standalone run folder, a program that
changed under a run, best.diff as ``git apply`` takes it, and a generator with nothing to do."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from typer.testing import CliRunner

from orchestrator.cli.app import app
from orchestrator.errors import ConfigError, NoProposalsError, StoreError
from orchestrator.evolution.config import load_config
from orchestrator.evolution.launch import run_evolution
from orchestrator.evolution.loop import Evolution
from orchestrator.evolution.opening import create_run, resume_run
from orchestrator.evolution.slots import Slot
from orchestrator.generators.mutate import MutateGenerator
from orchestrator.program import Program
from orchestrator.runs.report import write_report
from orchestrator.runs.store import Store, find_run
from orchestrator.runs.summary import write_outputs

from .fakes import FakeGenerator, FakeRunner, make_program

TINY = Path(__file__).resolve().parents[2] / "programs" / "examples" / "tiny"


def made_run(tmp_path: Path, script: list[float], run_id: str = "r1") -> tuple[Path, Program]:
    """A finished run of the fake program (``X = 0``, loss ``(X - 3)²``) made through the real
    launcher's creation, with the fake runner and a scripted generator."""
    program = make_program(tmp_path / "prog", noise=0.01)
    cfg = load_config(None, {"program": str(program.root), "run_id": run_id,
                             "runs_dir": str(tmp_path / "runs"),
                             "budget.variants": len(script)})
    opened = create_run(cfg, program)
    evo = Evolution(cfg, opened.store, program, FakeRunner(), FakeGenerator(script=script),
                    [Slot(0)])
    evo.run()
    write_outputs(opened.store, program)
    write_report(opened.store, program)
    opened.store.close()
    opened.lock.release()
    return opened.store.folder, program


def test_a_run_folder_reads_alone_after_its_program_is_gone_and_it_moved(tmp_path):
    folder, program = made_run(tmp_path, [2.0, 2.5])
    moved = tmp_path / "elsewhere" / "artifact"
    shutil.copytree(folder, moved)  # a CI artifact, downloaded elsewhere
    shutil.rmtree(folder)
    shutil.rmtree(program.root)
    cli = CliRunner()
    for args in (["status", str(moved)], ["best", str(moved)], ["lineage", str(moved)],
                 ["show", str(moved), "#1"], ["report", str(moved)]):
        done = cli.invoke(app, args)
        assert done.exit_code == 0, (args, done.output)
    best = cli.invoke(app, ["best", str(moved)])
    assert best.stdout.split()[1] == "loss=0.25"
    assert "X = 2.0" in cli.invoke(app, ["show", str(moved), "#1"]).stdout
    # the global --runs-dir names the folder the ids live in
    listed = cli.invoke(app, ["--runs-dir", str(moved.parent), "status"])
    assert listed.exit_code == 0 and listed.stdout.startswith("artifact  fake  finished")
    assert listed.stderr == "", "status lines are data: stdout"
    tree = cli.invoke(app, ["--runs-dir", str(moved.parent), "lineage", "artifact"])
    assert "#2" in tree.stdout and tree.stderr == ""


def test_show_takes_the_index_lineage_prints(tmp_path):
    folder, _program = made_run(tmp_path, [2.0])
    cli = CliRunner()
    tree = cli.invoke(app, ["lineage", str(folder)]).stdout
    idx = next(w for w in tree.split() if w.startswith("#1"))
    shown = cli.invoke(app, ["show", str(folder), idx])
    assert shown.exit_code == 0 and "X = 2.0" in shown.stdout
    missing = cli.invoke(app, ["show", str(folder), "#9"])
    assert missing.exit_code == 1 and "no variant #9" in missing.stderr


def test_best_diff_applies_with_git_apply_from_the_program_folder_as_documented(tmp_path):
    folder, program = made_run(tmp_path, [2.0, 2.5])
    diff = folder / "best.diff"
    target = tmp_path / "copy"
    shutil.copytree(program.root, target)
    subprocess.run(["git", "apply", str(diff)], cwd=target, check=True)  # outside any repo
    assert (target / "train.py").read_text() == "X = 2.5\n"
    # from the root of a git repository holding the program: --directory names its folder
    repo = tmp_path / "repo"
    shutil.copytree(program.root, repo / "programs" / "fake")
    subprocess.run(["git", "init", "-q", str(repo)], check=True)
    subprocess.run(["git", "apply", "--directory=programs/fake", str(diff)], cwd=repo,
                   check=True)
    assert (repo / "programs" / "fake" / "train.py").read_text() == "X = 2.5\n"


def test_no_best_diff_and_a_clear_line_when_nothing_beat_the_seed(tmp_path):
    folder, _program = made_run(tmp_path, [-1.0, 7.0])  # losses 16 and 16: worse than the seed's 9
    assert not (folder / "best.diff").exists()
    best = CliRunner().invoke(app, ["best", str(folder), "--diff"])
    assert best.exit_code == 0 and best.stdout == ""
    assert "no variant beat the seed" in best.stderr


def test_a_run_killed_inside_its_first_transaction_is_nothing_and_its_id_starts_again(
        tmp_path):
    program = make_program(tmp_path / "prog")
    runs = tmp_path / "runs"
    marker = tmp_path / "paused"
    code = ("import sys\nfrom orchestrator.evolution.config import load_config\n"
            "from orchestrator.evolution.opening import create_run\n"
            "from orchestrator.program import Program\n"
            f"cfg = load_config(None, {{'program': {str(program.root)!r}, 'run_id': 'x', "
            f"'runs_dir': {str(runs)!r}}})\n"
            "create_run(cfg, Program.load(cfg.program))\n")
    env = {**os.environ, "PYTHONPATH": os.getcwd(), "SELFPROG_PAUSE_AT": "store-write",
           "SELFPROG_PAUSE_FILE": str(marker)}
    proc = subprocess.Popen([sys.executable, "-c", code], env=env)
    try:
        deadline = time.monotonic() + 30
        while not marker.exists():
            assert proc.poll() is None and time.monotonic() < deadline, "never reached the point"
            time.sleep(0.02)
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    with pytest.raises(StoreError, match="no run 'x'"):
        find_run("x", runs)  # not a run that says "never started" forever
    cfg = load_config(None, {"program": str(program.root), "run_id": "x",
                             "runs_dir": str(runs)})
    opened = create_run(cfg, program)  # the id is free: the debris goes
    assert opened.store.run_info()["state"] == "running"
    assert sorted(p.name for p in runs.iterdir()) == ["x"]
    opened.store.close()
    opened.lock.release()


def test_resume_refuses_a_changed_program_unless_told_and_records_it(tmp_path):
    folder, program = made_run(tmp_path, [2.0])
    cfg = load_config(None, {"program": str(program.root)})
    (program.root / "evaluate.py").write_text("# trusted, but edited\n")
    with pytest.raises(ConfigError, match="--accept-changed-program"):
        resume_run(cfg, Program.load(program.root), folder)
    other = make_program(tmp_path / "other", x=1.0)
    with pytest.raises(ConfigError, match="not the one run r1 started with"):
        resume_run(cfg, other, folder)
    opened = resume_run(cfg, Program.load(program.root), folder, accept_changed_program=True)
    notes = opened.store.notes()
    assert [n["kind"] for n in notes] == ["program-changed"]
    assert "accepted with --accept-changed-program" in notes[0]["text"]
    assert (folder / "program" / "evaluate.py").read_text() == "# trusted, but edited\n"
    opened.store.close()
    opened.lock.release()
    again = resume_run(cfg, Program.load(program.root), folder)  # now the recorded one
    again.store.close()
    again.lock.release()


class NoEngine:
    """A backend that must never be reached: the run stops before it needs one."""

    def __getattr__(self, name: str):
        raise AssertionError(f"the backend was used ({name}) before the check")


def test_mutate_on_a_program_with_no_search_space_stops_at_once_and_leaves_no_run(tmp_path):
    program = make_program(tmp_path / "prog")
    (program.root / "train.py").write_text("x = 0.5\n")  # nothing declared
    runs = tmp_path / "runs"
    with pytest.raises(NoProposalsError, match="no editable file of program fake"):
        run_evolution(None, {"program": str(program.root), "generator.backend": "mutate",
                             "runs_dir": str(runs)}, backend=NoEngine())  # type: ignore[arg-type]
    assert not runs.exists() or not any(runs.iterdir())


def test_the_shipped_tiny_example_declares_a_search_space():
    assert MutateGenerator().cannot_propose(Program.load(TINY)) is None


def test_an_engine_missing_at_start_leaves_no_run_behind(tmp_path):
    env = {**os.environ, "DOCKER_HOST": f"unix://{tmp_path}/no.sock"}
    done = subprocess.run([sys.executable, "-m", "orchestrator.cli.app", "evolve", "--no-live",
                           "--program", str(TINY), "--generator", "mutate", "--runs-dir",
                           str(tmp_path / "runs")], env=env, capture_output=True, text=True,
                          timeout=120, check=False)
    assert done.returncode == 3, done.stderr
    assert not (tmp_path / "runs").exists() or not any((tmp_path / "runs").iterdir())


def test_a_run_id_naming_a_folder_that_is_not_a_run_never_deletes_it(tmp_path):
    program = make_program(tmp_path / "prog")
    runs = tmp_path / "runs"
    (runs / "mine").mkdir(parents=True)
    (runs / "mine" / "notes.txt").write_text("keep me")
    cfg = load_config(None, {"program": str(program.root), "run_id": "mine",
                             "runs_dir": str(runs)})
    with pytest.raises(StoreError, match="is not a run"):
        create_run(cfg, program)
    assert (runs / "mine" / "notes.txt").read_text() == "keep me"


def test_the_run_list_goes_on_past_a_run_it_cannot_read(tmp_path):
    folder, _program = made_run(tmp_path, [2.0])
    Store(folder.parent / "a-broken", create=True).close()  # tables, no run row
    listed = CliRunner().invoke(app, ["status", "--runs-dir", str(folder.parent)])
    assert listed.exit_code == 0
    assert listed.stdout.startswith("r1  fake  finished")
    assert "a-broken: not readable" in listed.stderr

"""``--summary-md``: the job summary says why the run stopped, whether it improved, shows the
best diff, and is written also when the run fails, is interrupted or never starts.

The loop runs on the fake runner here (the real engine's path is in tests/cli/test_evolve_cli.py).
"""

from __future__ import annotations

import os
import signal
from pathlib import Path

import pytest
from typer.testing import CliRunner

from orchestrator.cli.app import app
from orchestrator.errors import ConfigError, Interrupted
from orchestrator.evolution.launch import run_evolution
from orchestrator.runs.step_summary import StepSummary
from orchestrator.runs.summary import diff_summary, markdown
from tests.evolution.fakes import FakeRunner
from tests.evolution.quickprog import write_quick_program


class Backend:
    """The fake runner behind the ``Backend`` protocol."""

    def __init__(self, runner: object):
        self._runner = runner

    def host_gpus(self) -> int:
        return 0

    def runner(self, gpu: bool) -> object:
        return self._runner

    def sweep(self, run_id: str | None = None) -> list[str]:
        return []

    def stop_run(self, run_id: str, *, settle_s: float = 10.0) -> list[str]:
        return []


class Breaks(FakeRunner):
    """Raises (as a broken runner would) from its ``after``-th evaluation on."""

    def __init__(self, after: int, error: BaseException):
        super().__init__()
        self.after, self.error = after, error

    def run(self, request):
        if len(self.calls) >= self.after:
            raise self.error
        return super().run(request)


class CtrlC:
    """An observer in whose ``tick`` (the loop's thread) a real SIGINT lands on the third step."""

    def __init__(self) -> None:
        self.ticks = 0

    def start(self, evolution: object) -> None: ...

    def tick(self, evolution: object) -> None:
        self.ticks += 1
        if self.ticks == 3:
            os.kill(os.getpid(), signal.SIGINT)

    def stop(self) -> None: ...


def _evolve(tmp_path: Path, runner: object, md: Path, observer: object = None,
            **over: object) -> None:
    program = write_quick_program(tmp_path / "quick")
    overrides = {"program": str(program.root), "runs_dir": str(tmp_path / "runs"),
                 "run_id": "r", "generator.backend": "mutate", "budget.variants": 4,
                 "slots.count": 1, **over}
    with StepSummary(md) as step:
        run_evolution(None, overrides, backend=Backend(runner), summary_md=step,
                      observer=observer)


def test_a_finished_run_says_why_it_stopped_whether_it_improved_and_shows_the_best_diff(
        tmp_path):
    md = tmp_path / "step.md"
    md.write_text("earlier step\n")
    _evolve(tmp_path, FakeRunner(), md)
    text = md.read_text()
    assert text.startswith("earlier step\n## selfprog run `r`")
    assert "**Stopped:** variant budget (state finished)" in text
    assert "**Improved:** yes" in text and "× noise" in text
    fence = text.index("```diff\n")
    body = text[fence:text.index("\n```\n", fence)]
    assert "--- a/train.py" in body and ("+X = " in body or "+Y = " in body)
    assert "rejections:" in text and "tokens" in text
    assert text.count("## selfprog run") == 1, "written exactly once"
    assert (tmp_path / "runs" / "r" / "summary.md").read_text() == text.removeprefix(
        "earlier step\n")


def test_a_run_that_crashes_midway_still_writes_its_summary_with_the_error(tmp_path):
    md = tmp_path / "step.md"
    with pytest.raises(RuntimeError):
        _evolve(tmp_path, Breaks(3, RuntimeError("the runner broke")), md)
    text = md.read_text()
    assert text.startswith("## selfprog run `r`")
    assert "**Stopped:** failed: the runner broke" in text
    assert "**Improved:**" in text and "evaluations" in text
    assert "failed: the runner broke" in (tmp_path / "runs" / "r" / "summary.json").read_text()


def test_an_interrupted_run_writes_its_summary_and_still_exits_130(tmp_path):
    md = tmp_path / "step.md"
    with pytest.raises(Interrupted) as caught:
        _evolve(tmp_path, FakeRunner(), md, CtrlC())
    assert caught.value.exit_code == 130
    text = md.read_text()
    assert "**Stopped:** interrupted (exit 130)" in text and "state interrupted" in text


def test_a_config_error_found_before_the_run_exists_leaves_no_run_and_a_failure_note(tmp_path):
    md = tmp_path / "step.md"
    with pytest.raises(ConfigError):  # from_spec needs a task.toml the program lacks
        _evolve(tmp_path, FakeRunner(), md, from_spec=True)
    text = md.read_text()
    assert text.startswith("## selfprog evolve failed") and "failed (exit 2): --from-spec" in text
    assert not (tmp_path / "runs" / "r").exists()  # checked before the run was created


def test_a_run_that_never_started_writes_a_failure_note(tmp_path):
    md = tmp_path / "step.md"
    done = CliRunner().invoke(app, ["evolve", "--no-live", "--summary-md", str(md),
                                    "--set", "budget.wallclock=3"])
    assert done.exit_code == 2
    text = md.read_text()
    assert text.startswith("## selfprog evolve failed")
    assert "failed (exit 2)" in text and "budget.wallclock" in text and "no run" in text


def test_the_best_diff_is_fenced_longer_than_any_backticks_it_holds():
    data = {"run": "r", "program": "p", "metric": "m", "goal": "minimize", "noise": 0.1,
            "seed": {"id": "s", "value": 2.0}, "best": {"id": "b", "value": 1.0},
            "improved": True, "gain": 1.0, "gain_in_noise": 10.0, "reason": "wall time",
            "counts": {"variants": 2, "evaluations": 2, "statuses": {}, "calls": {}}}
    diff = '--- a/t.py\n+++ b/t.py\n@@ -1 +1 @@\n-X = 1\n+DOC = """```python```"""\n'
    text = markdown(data, diff)
    assert "\n````diff\n" in text and "\n````\n" in text
    assert "**Stopped:** wall time" in text and "**Improved:** yes — m 2 → 1" in text
    assert "**Improved:** no" in markdown({**data, "improved": False}, "")
    assert diff_summary(diff) == 't.py +1 -1: DOC = """```python```"""'

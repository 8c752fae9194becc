"""The hostile-program kit: build a throwaway program around a hostile TRAIN script, run it
through the real DockerRunner, and check the sandbox held.

Every hostile program first writes the honest artifact (``answer.txt`` = 42), so whenever its
variant reaches EVAL the trusted evaluator's metric is known: ``TRUTH``. Hostile scripts print
``LEAK ...`` whenever an attack works; a contained program never prints it.
"""

from __future__ import annotations

import hashlib
import textwrap
from dataclasses import dataclass
from pathlib import Path

from orchestrator.containers.hardening import LABEL_RUN
from orchestrator.program import Program
from orchestrator.result import Status, VariantResult

TRUTH = {"score": 0.25}
PRELUDE = """\
import os, sys
from pathlib import Path
OUT = Path(os.environ["SELFPROG_OUT"])
(OUT / "answer.txt").write_text("42")
"""
EVALUATOR = """\
import os, sys
from pathlib import Path
from sandbox import report
try:
    text = (Path(os.environ["SELFPROG_OUT"]) / "answer.txt").read_text()[:100]
except OSError as exc:
    report.error("artifact", f"no answer: {exc}")
    sys.exit(1)
report.result(score=0.25 if text.strip() == "42" else 0.0)
"""
HOST_SECRET = "selfprog-host-secret-7f3a"


@dataclass
class Outcome:
    result: VariantResult
    folder: Path
    program: Program
    run_id: str

    def log(self, stage: str = "train") -> str:
        path = self.folder / f"{stage}.log"
        return path.read_text() if path.exists() else ""


def snapshot(root: Path) -> str:
    digest = hashlib.sha256()
    for path in sorted(root.rglob("*")):
        digest.update(str(path.relative_to(root)).encode())
        if path.is_file():
            digest.update(path.read_bytes())
    return digest.hexdigest()


def make_program(root: Path, train: str, evaluator: str = EVALUATOR, **resources) -> Program:
    """A program folder with ``train``'s source after the honest prelude, and small resources."""
    (root / "data" / "train").mkdir(parents=True)
    (root / "data" / "heldout").mkdir(parents=True)
    (root / "data" / "train" / "x.txt").write_text("train\n")
    (root / "data" / "heldout" / "y.txt").write_text("heldout\n")
    (root / "train.py").write_text(PRELUDE + textwrap.dedent(train))
    (root / "evaluate.py").write_text(evaluator)
    res = {"cpus": 1.0, "memory": "256m", "timeout_s": 20, "pids": 64, "disk": "16m", **resources}
    lines = "\n".join(f'{k} = "{v}"' if isinstance(v, str) else f"{k} = {v}"
                      for k, v in res.items())
    (root / "program.toml").write_text(
        '[program]\nname = "hostile"\n[metric]\nname = "score"\ngoal = "maximize"\n'
        f'[resources]\n{lines}\n'
        '[data]\ntrain = "data/train"\nheldout = "data/heldout"\n')
    return Program.load(root)


def assert_contained(docker_client, outcome: Outcome, root: Path, before: tuple[str, str]) -> None:
    """No leftover container or volume; nothing written outside the variant's folder; no leak;
    the metric, if any, is the evaluator's; the engine still answers."""
    assert docker_client.ping()
    label = {"label": f"{LABEL_RUN}={outcome.run_id}"}
    assert docker_client.api.containers(all=True, filters=label) == []
    assert (docker_client.api.volumes(filters=label).get("Volumes") or []) == []
    assert (snapshot(root / "program"), snapshot(root / "outside")) == before
    assert sorted(p.name for p in root.iterdir()) == ["outside", "program", "variant"]
    for stage in ("train", "eval"):
        assert "LEAK" not in outcome.log(stage), outcome.log(stage)[-2000:]
        assert HOST_SECRET not in outcome.log(stage)
    result = outcome.result
    assert result.metrics in ({}, TRUTH), result.metrics
    assert (result.metrics == TRUTH) == (result.status is Status.OK)
    assert (outcome.folder / "result.json").is_file()

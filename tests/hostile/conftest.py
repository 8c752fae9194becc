"""Fixtures of the hostile suite: one DockerRunner for the session, and ``hostile(train_src)``."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from pathlib import Path

import pytest

from orchestrator.containers.docker_runner import DockerRunner
from orchestrator.program import Program
from orchestrator.runner import RunRequest, Variant
from tests.hostile.kit import HOST_SECRET, Outcome, assert_contained, make_program, snapshot


@pytest.fixture(scope="session")
def runner(docker_client, runtime_image) -> DockerRunner:
    return DockerRunner(docker_client, grace_s=1.0, linger_s=30, runtime={"cpu": runtime_image})


@pytest.fixture
def hostile(runner, docker_client, tmp_path, request):
    """Run a hostile TRAIN script; check containment common to every case before returning."""
    (tmp_path / "outside").mkdir()
    (tmp_path / "outside" / "secret.txt").write_text(HOST_SECRET)

    def run(train: str, prepare: Callable[[Path], object] | None = None,
            **resources) -> Outcome:
        """``prepare(root)``, when given, changes the program folder before it is loaded."""
        program = make_program(tmp_path / "program", train, **resources)
        if prepare is not None:
            prepare(tmp_path / "program")
            program = Program.load(tmp_path / "program")
        before = snapshot(tmp_path / "program"), snapshot(tmp_path / "outside")
        run_id = f"hostile-{request.node.name[:24]}-{uuid.uuid4().hex[:6]}"
        folder = tmp_path / "variant"
        variant = Variant(program, program.source_files())
        result = runner.run(RunRequest(variant=variant, run_id=run_id, folder=folder))
        outcome = Outcome(result, folder, program, run_id)
        assert_contained(docker_client, outcome, tmp_path, before)
        return outcome

    return run

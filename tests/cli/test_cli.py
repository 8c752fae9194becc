"""The CLI's foundation commands run and say something true."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from orchestrator.cli.app import app
from sandbox.protocol import json_schema

runner = CliRunner()


def test_help_lists_the_commands():
    result = runner.invoke(app, ["--help"])
    assert result.exit_code == 0
    for command in ("doctor", "images", "engine", "protocol"):
        assert command in result.output


def test_protocol_schema_prints_the_generated_schema():
    result = runner.invoke(app, ["protocol", "schema"])
    assert result.exit_code == 0
    assert json.loads(result.stdout) == json_schema()


@pytest.mark.docker
def test_doctor_says_yes_to_a_running_engine_and_built_image(docker_client, runtime_image):
    from orchestrator.containers.doctor import run_checks

    checks = {c.name: c for c in run_checks(min_free_gb=0)}
    assert checks["docker engine"].ok and checks["docker engine"].detail.startswith("version ")
    assert checks["cpu runtime image"].ok
    assert runtime_image.split(":")[1] in checks["cpu runtime image"].detail


def test_doctor_gives_the_fix_when_disk_is_short(monkeypatch):
    from orchestrator.containers import doctor

    checks = doctor.run_checks(min_free_gb=10**9)
    disk = next(c for c in checks if c.name == "free disk")
    assert not disk.ok and "free at least" in disk.fix

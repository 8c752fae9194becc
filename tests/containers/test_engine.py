"""Engine provisioning: an answering engine is left alone; elsewhere the message says what to do."""

from __future__ import annotations

import subprocess

import pytest

from orchestrator.containers import engine
from orchestrator.errors import EngineError


@pytest.mark.docker
def test_an_answering_engine_is_used_as_it_is(docker_client, monkeypatch):
    started = []
    monkeypatch.setattr(subprocess, "Popen", lambda *a, **k: started.append(a))
    client = engine.ensure_engine()
    assert client.ping()
    assert started == [], "an engine that answers must never be touched"


def test_a_dead_docker_host_is_reported_not_provisioned(monkeypatch):
    monkeypatch.setenv("DOCKER_HOST", "tcp://127.0.0.1:9")
    with pytest.raises(EngineError, match="DOCKER_HOST=tcp://127.0.0.1:9 does not answer"):
        engine.ensure_engine(wait_s=1)


def test_without_root_the_message_says_what_to_do(monkeypatch):
    monkeypatch.setattr(engine, "engine_answers", lambda: False)
    monkeypatch.delenv("DOCKER_HOST", raising=False)
    monkeypatch.setattr(engine.os, "geteuid", lambda: 1000)
    with pytest.raises(EngineError, match="Install Docker Engine"):
        engine.ensure_engine(wait_s=1)


def test_provisioning_progress_is_logged_not_printed(monkeypatch, tmp_path, caplog, capsys):
    answers = iter([False, True])
    monkeypatch.setattr(engine, "engine_answers", lambda: next(answers))
    monkeypatch.setattr(engine, "connect", lambda: "client")
    monkeypatch.delenv("DOCKER_HOST", raising=False)
    monkeypatch.setattr(engine.os, "geteuid", lambda: 0)
    monkeypatch.setattr(engine, "Path", lambda _p: tmp_path)  # /etc/debian_version "exists"
    monkeypatch.setattr(engine, "BUILD_DIR", tmp_path)
    monkeypatch.setattr(engine.shutil, "which", lambda _name: "/usr/bin/dockerd")
    monkeypatch.setattr(subprocess, "Popen", lambda *a, **k: None)
    with caplog.at_level("INFO", logger="orchestrator.containers.engine"):
        assert engine.ensure_engine(wait_s=5) == "client"
    assert [r.getMessage().split(" (")[0] for r in caplog.records] == [
        "starting dockerd in the background", "the Docker engine answers."]
    assert capsys.readouterr().out == ""

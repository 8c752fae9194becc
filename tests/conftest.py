"""Shared fixtures. Docker tests need a real engine: without one they fail (never skip)."""

from __future__ import annotations

import pytest

from orchestrator.errors import EngineError


@pytest.fixture(scope="session")
def docker_client():
    """A client for the real engine. `make test` starts one; a missing engine fails the test."""
    from orchestrator.containers.engine import connect

    try:
        client = connect(timeout=60)
    except EngineError as exc:
        pytest.fail(f"docker tests need a running engine (run `make engine`): {exc}")
    yield client
    client.close()


@pytest.fixture(scope="session")
def runtime_image(docker_client) -> str:
    """The CPU runtime image's tag, built if missing (`make test` builds it beforehand)."""
    from orchestrator.containers.images import ensure_runtime

    return ensure_runtime(docker_client, "cpu")

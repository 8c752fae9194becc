"""Shared fixtures. Docker tests need a real engine: without one they fail (never skip)."""

from __future__ import annotations

import pytest

from orchestrator.errors import EngineError


def pytest_itemcollected(item: pytest.Item) -> None:
    """Under ``pytest -n 2 --dist loadgroup`` (``make test``) the Docker tests run in two groups,
    each in one worker, one test after another: they share one engine, some share run ids, and
    several check that no container of theirs is left. The tests that need no engine run beside.
    (Marked as each item is collected: xdist reads the groups before other collection hooks.)"""
    if item.get_closest_marker("docker"):
        item.add_marker(pytest.mark.xdist_group(_docker_group(item)))


def _docker_group(item: pytest.Item) -> str:
    """``docker-programs`` for the shipped programs' runs (each in its own run, no sweeps, no
    engine-wide checks), which may overlap the other Docker tests; ``docker`` for the rest."""
    return "docker-programs" if item.path.parent.name == "programs" else "docker"


@pytest.hookimpl(trylast=True)
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Refuse to run Docker tests in parallel by accident: under loadgroup every one of them must
    carry xdist's group tag in its node id, or the grouping did not happen. Opt-in tests
    (``gpu_image``: several GB of downloads) are left out unless ``-m`` names them."""
    if "gpu_image" not in (config.getoption("markexpr", "") or ""):
        left = [i for i in items if i.get_closest_marker("gpu_image")]
        if left:
            config.hook.pytest_deselected(items=left)
            items[:] = [i for i in items if not i.get_closest_marker("gpu_image")]
    if not config.getoption("loadgroup", False):
        return
    untagged = [i.nodeid for i in items if i.get_closest_marker("docker")
                and not i.nodeid.endswith("@" + _docker_group(i))]
    if untagged:
        raise pytest.UsageError(f"xdist did not group {len(untagged)} Docker test(s) (e.g. "
                                f"{untagged[0]}): check the pytest/pytest-xdist versions")


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

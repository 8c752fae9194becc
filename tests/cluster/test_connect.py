"""Choosing the Ray backend where it cannot work fails at once, saying what to do."""

from __future__ import annotations

import sys

import pytest

from orchestrator.cluster.backend import RayBackend
from orchestrator.errors import ConfigError


def test_the_ray_backend_without_ray_installed_says_how_to_install_it(monkeypatch):
    monkeypatch.setitem(sys.modules, "ray", None)  # `import ray` now raises ImportError
    with pytest.raises(ConfigError, match=r"selfprog\[cluster\]"):
        RayBackend.connect()

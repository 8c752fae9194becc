"""EvolveConfig: defaults that run, one TOML file plus overrides, and mistakes named at once."""

from __future__ import annotations

import pytest

from orchestrator.errors import ConfigError
from orchestrator.evolution.config import EvolveConfig, load_config, parse_override


def test_the_embedded_defaults_evolve_codelm_for_about_fifteen_minutes():
    cfg = load_config()
    assert cfg.program.as_posix() == "programs/codelm"
    assert cfg.budget.wall_time_s == 900
    assert cfg.slots.count is None  # decided by the host: GPUs found, or cores
    assert cfg.generator.backend == "auto"


def test_a_file_and_overrides_combine_and_overrides_win(tmp_path):
    path = tmp_path / "c.toml"
    path.write_text('[budget]\nvariants = 5\n[selection]\nstrategy = "elitist"\n')
    cfg = load_config(path, dict([parse_override("budget.variants=7"),
                                  parse_override("generator.backend=mutate")]))
    assert cfg.budget.variants == 7 and cfg.selection.strategy == "elitist"
    assert cfg.generator.backend == "mutate"


def test_a_misspelt_key_fails_at_once_naming_the_key(tmp_path):
    path = tmp_path / "c.toml"
    path.write_text("[budget]\nvariantz = 5\n")
    with pytest.raises(ConfigError, match=r"unknown key 'budget.variantz'") as err:
        load_config(path)
    assert err.value.exit_code == 2


def test_a_bad_value_fails_naming_the_key():
    with pytest.raises(ConfigError, match=r"selection.strategy"):
        load_config(None, {"selection.strategy": "best"})
    with pytest.raises(ConfigError, match=r"slots.count"):
        load_config(None, {"slots.count": 0})
    with pytest.raises(ConfigError, match=r"unknown key 'generator.mutate.maxchanges'"):
        load_config(None, {"generator.mutate.maxchanges": 2})


def test_a_missing_or_broken_file_is_a_config_error(tmp_path):
    with pytest.raises(ConfigError, match="does not exist"):
        load_config(tmp_path / "nope.toml")
    (tmp_path / "bad.toml").write_text("[budget\n")
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_config(tmp_path / "bad.toml")


def test_an_override_without_equals_is_refused():
    with pytest.raises(ConfigError, match="KEY=VALUE"):
        parse_override("budget.variants")
    assert parse_override("generator.backend=mutate") == ("generator.backend", "mutate")
    assert parse_override("budget.wall_time_s=1.5") == ("budget.wall_time_s", 1.5)


def test_the_config_is_frozen():
    with pytest.raises(ValueError):
        EvolveConfig().seed = 3  # type: ignore[misc]


def test_the_cluster_backend_is_named_in_the_config_and_a_wrong_one_is_refused(tmp_path):
    path = tmp_path / "c.toml"
    path.write_text('[cluster]\nbackend = "ray"\naddress = "10.0.0.5:6379"\n')
    cfg = load_config(path)
    assert cfg.cluster.backend == "ray" and cfg.cluster.address == "10.0.0.5:6379"
    assert load_config().cluster.backend == "local"
    with pytest.raises(ConfigError, match="cluster.backend"):
        load_config(None, {"cluster.backend": "slurm"})

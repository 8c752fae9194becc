"""The factory, ``auto``'s choice and its one-line reason, and the config's strictness."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
from pydantic import BaseModel, ValidationError

from orchestrator.errors import ConfigError
from orchestrator.generators.auto import BUILDERS, choose, make_generator, preview, propose_config
from orchestrator.generators.config import BACKENDS, GeneratorConfig


def _config(**data) -> GeneratorConfig:
    return GeneratorConfig.model_validate(data)


def test_auto_prefers_a_configured_endpoint():
    gen, reason = choose(_config(openai={"base_url": "http://127.0.0.1:9/v1", "model": "qwen"}))
    assert gen.name == "openai"
    assert reason == ("generator: openai (qwen at http://127.0.0.1:9/v1): "
                      "generator.openai.base_url is set")


def _logged(caplog) -> list[str]:
    """What the factory logged at INFO."""
    return [r.getMessage() for r in caplog.records
            if r.name == "orchestrator.generators.auto" and r.levelno == logging.INFO]


@pytest.mark.slow
def test_auto_takes_hf_when_its_model_loads(tiny_lm, caplog):
    caplog.set_level(logging.INFO, logger="orchestrator.generators.auto")
    gen = make_generator(_config(hf={"model": str(tiny_lm)}))
    assert gen.name == "hf"
    assert _logged(caplog) == [f"generator: hf ({tiny_lm} on cpu): no openai endpoint is "
                               "configured and the model loaded"]


def test_auto_falls_back_to_mutate_and_says_why(tmp_path):
    gen, reason = choose(_config())
    assert gen.name == "mutate"
    assert reason.endswith("no openai endpoint and no hf model is configured")
    gen, reason = choose(_config(hf={"model": str(tmp_path / "missing")}))
    assert gen.name == "mutate" and "the hf model did not load" in reason
    assert "\n" not in reason


def test_named_backend_that_cannot_start_is_a_config_error(tmp_path):
    with pytest.raises(ConfigError, match="set generator.openai.base_url or OPENAI_BASE_URL"):
        make_generator(_config(backend="openai"))
    with pytest.raises(ConfigError, match="codelm.model is not set"):
        make_generator(_config(backend="self"))
    with pytest.raises(ConfigError, match="not an http"):
        make_generator(_config(backend="openai", openai={"base_url": "ftp://x"}))


def test_named_mutate_needs_nothing():
    gen, reason = choose(_config(backend="mutate"))
    assert gen.name == "mutate" and reason == "generator: mutate (no model), as configured"


def test_config_rejects_unknown_keys_and_is_frozen():
    with pytest.raises(ValidationError, match="temprature"):
        _config(temprature=0.5)
    with pytest.raises(ValidationError, match="deadline"):
        _config(openai={"deadline": 5})
    config = _config()
    with pytest.raises(ValidationError):
        config.temperature = 2.0


def test_every_config_field_is_documented():
    models = [GeneratorConfig]
    while models:
        model = models.pop()
        for name, field in model.model_fields.items():
            assert field.description, f"{model.__name__}.{name} has no docstring"
            if isinstance(field.default, BaseModel):
                models.append(type(field.default))


def test_one_list_of_backends_and_the_factory_builds_each_but_auto():
    assert BACKENDS == ("auto", "hf", "openai", "self", "mutate")
    assert set(BUILDERS) == set(BACKENDS) - {"auto"}


def test_propose_puts_the_model_in_the_chosen_backends_own_section():
    assert propose_config("self", "runs/x/artifacts", None).codelm.model == "runs/x/artifacts"
    both = propose_config("openai", "qwen", "http://127.0.0.1:9/v1")
    assert (both.backend, both.openai.model, both.openai.base_url) == (
        "openai", "qwen", "http://127.0.0.1:9/v1")
    for backend in ("hf", "auto", "mutate"):  # auto tries hf after an endpoint
        config = propose_config(backend, "gpt2", None)
        assert config.backend == backend and config.hf.model == "gpt2"
    plain = propose_config("auto", None, "http://127.0.0.1:9/v1")
    assert plain.openai.base_url == "http://127.0.0.1:9/v1" and plain.hf.model is None


def test_propose_refuses_an_unknown_backend_naming_every_backend():
    with pytest.raises(ConfigError, match="'gpt' is not one of auto, hf, openai, self, mutate"):
        propose_config("gpt", None, None)


def test_the_factory_logs_its_choice_and_why_at_info(caplog):
    caplog.set_level(logging.INFO, logger="orchestrator.generators.auto")
    make_generator(_config(backend="mutate"))
    assert _logged(caplog) == ["generator: mutate (no model), as configured"]


TOY = Path(__file__).parent / "fixtures" / "toy"


def test_preview_proposes_from_the_shipped_source_and_logs_the_choice(caplog):
    caplog.set_level(logging.INFO, logger="orchestrator.generators.auto")
    proposals = preview(TOY, _config(backend="mutate"), n=2, seed=1)
    assert len(proposals) == 2 and all(p.valid and p.parent_id == "seed" for p in proposals)
    assert all(p.diff_parent == p.diff_seed != "" for p in proposals)
    assert _logged(caplog) == ["generator: mutate (no model), as configured"]
    written = preview(TOY, _config(backend="mutate"), n=1, seed=1, from_spec=True)
    assert written[0].parent_id is None

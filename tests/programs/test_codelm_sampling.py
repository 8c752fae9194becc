"""The self loop's entry point: an exported codelm loads on the host and samples bytes."""

from __future__ import annotations

import json

import pytest

from orchestrator.errors import CodeLMError
from orchestrator.generators.inprocess import InProcessCompleter
from orchestrator.generators.testing import export_tiny


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    return export_tiny(tmp_path_factory.mktemp("tiny"), seed=3, context=16)


def test_tiny_export_loads_and_samples_the_asked_number_of_bytes(tiny):
    lm = InProcessCompleter.load(tiny)
    assert lm.context == 16
    text = lm.complete("def add(a, b):\n", max_new_bytes=40, seed=1)
    assert 0 < len(text.encode("utf-8", errors="surrogatepass")) <= 40 * 3
    # Random weights over 256 bytes: 40 bytes decode to at least a few characters.
    assert len(text) >= 14


def test_same_seed_gives_same_text_and_another_seed_differs(tiny):
    lm = InProcessCompleter.load(tiny)
    a = lm.complete("x = ", 60, temperature=1.0, seed=7)
    assert a == lm.complete("x = ", 60, temperature=1.0, seed=7)
    assert a != lm.complete("x = ", 60, temperature=1.0, seed=8)


def test_greedy_ignores_the_seed(tiny):
    lm = InProcessCompleter.load(tiny)
    assert lm.complete("abc", 20, temperature=0, seed=1) == lm.complete("abc", 20, temperature=0,
                                                                        seed=2)


def test_stop_cuts_the_completion_before_the_stop_string(tiny):
    lm = InProcessCompleter.load(tiny)
    full = lm.complete("import os", 80, temperature=1.0, seed=5)
    stop = full[10:12]
    cut = lm.complete("import os", 80, temperature=1.0, seed=5, stop=stop)
    assert cut == full[: full.index(stop)]


def test_prompt_longer_than_the_context_is_truncated_not_an_error(tiny):
    lm = InProcessCompleter.load(tiny)
    assert lm.complete("y" * 500 + "é", 5, seed=0) == lm.complete("y" * 50 + "é", 5, seed=0)


def test_missing_or_malformed_export_is_a_codelm_error_naming_the_folder(tmp_path, tiny):
    with pytest.raises(CodeLMError, match=str(tmp_path)):
        InProcessCompleter.load(tmp_path)
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "model.pt").write_bytes((tiny / "model.pt").read_bytes())
    (bad / "model.json").write_text(json.dumps({"context": "128"}))
    with pytest.raises(CodeLMError, match="context"):
        InProcessCompleter.load(bad)
    (bad / "model.json").write_text(json.dumps({"context": 16}))
    (bad / "model.pt").write_bytes(b"not a zip archive")
    with pytest.raises(CodeLMError, match="TorchScript"):
        InProcessCompleter.load(bad)

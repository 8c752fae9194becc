"""The in-process completer answers a batch as the sandboxed one does: one entry per request."""

from __future__ import annotations

import pytest

from orchestrator.completer import CompletionRequest
from orchestrator.errors import CodeLMError
from orchestrator.generators.inprocess import InProcessCompleter
from orchestrator.generators.testing import export_tiny


@pytest.fixture(scope="module")
def lm(tmp_path_factory) -> InProcessCompleter:
    return InProcessCompleter.load(export_tiny(tmp_path_factory.mktemp("tiny"), seed=3,
                                               context=16), device="cpu")


def test_complete_many_gives_each_request_what_complete_gives_it(lm):
    requests = [CompletionRequest("def add(a, b):\n", 30, 1.0, 7),
                CompletionRequest("x = " * 20 + "é", 20, 0.8, 2, "\n")]
    assert lm.complete_many(requests) == [
        lm.complete(r.prompt, r.max_new_bytes, r.temperature, r.seed, r.stop) for r in requests]


def test_a_request_the_model_fails_on_is_its_own_codelm_error_not_the_batchs(lm):
    good = CompletionRequest("abc", 10, 0.0, 1)
    bad = CompletionRequest("abc", 10, -1.0, 1)  # sampling refuses a negative temperature
    first, second, third = lm.complete_many([good, bad, good])
    assert isinstance(second, CodeLMError) and "temperature" in str(second)
    assert str(lm.folder) in str(second)
    assert first == third == lm.complete("abc", 10, 0.0, 1)
    with pytest.raises(CodeLMError, match="temperature"):
        lm.complete("abc", 10, -1.0, 1)

"""The self loop's entry point: an exported codelm loads on the host and samples bytes."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from orchestrator.completer import ScoreRequest
from orchestrator.errors import CodeLMError
from orchestrator.generators.inprocess import InProcessCompleter
from orchestrator.generators.testing import export_tiny
from sandbox.codelm import block_start, viable


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


# --- scoring and the python-block constraint, on a bigram model whose answers are known -----------

CORPUS = '''def f(a, b):
    x = a + b
    if x > 2:
        y = (x,
             a)
        return y
    return [x, b]


def g(c):
    for i in range(c):
        c = c - i
    return c
'''


class Bigram(torch.nn.Module):
    """logits[b, t] = table[idx[b, t]]: the next byte depends on the last byte only."""

    def __init__(self, table: torch.Tensor):
        super().__init__()
        self.table = torch.nn.Parameter(table)

    def forward(self, idx: torch.Tensor) -> torch.Tensor:
        return self.table[idx]


def bigram_table(text: str) -> torch.Tensor:
    counts = torch.full((256, 256), 0.01)
    data = text.encode()
    for a, b in zip(data, data[1:], strict=False):
        counts[a, b] += 1
    return counts.log()


@pytest.fixture(scope="module")
def bigram(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("bigram")
    torch.jit.script(Bigram(bigram_table(CORPUS))).save(str(folder / "model.pt"))
    (folder / "model.json").write_text(json.dumps({"context": 64}))
    return folder


def test_score_is_the_summed_log_probability_of_each_continuation(bigram):
    lm = InProcessCompleter.load(bigram, device="cpu")
    logp = torch.log_softmax(bigram_table(CORPUS), dim=-1)
    prompt, conts = "    x = a", ["+ b\n", " + b\n", "zz", "é"]
    (got,) = lm.score_many([ScoreRequest(prompt, tuple(conts))])
    for cont, value in zip(conts, got, strict=True):
        seq = (prompt + cont).encode()
        want = sum(float(logp[a, b]) for a, b in zip(seq[len(prompt.encode()) - 1 :],
                                                      seq[len(prompt.encode()) :], strict=False))
        assert value == pytest.approx(want, abs=1e-4)
    assert got[1] > got[0]  # " + b" is what the corpus says


def test_scores_of_a_batch_match_scores_one_by_one_and_errors_stay_per_request(bigram):
    lm = InProcessCompleter.load(bigram, device="cpu")
    conts = tuple(f"{i * 'x'} = {i}\n" for i in range(20))  # 20 lengths: padded, two chunks
    (batch,) = lm.score_many([ScoreRequest("    ", conts)])
    single = [lm.score_many([ScoreRequest("    ", (c,))])[0][0] for c in conts]
    assert batch == pytest.approx(single, abs=1e-4)
    good, empty = lm.score_many([ScoreRequest("a", ("b",)), ScoreRequest("a", ("",))])
    assert isinstance(good, list) and good[0] < 0
    assert isinstance(empty, CodeLMError) and "continuation" in str(empty)


def test_a_continuation_longer_than_the_context_is_scored_in_pieces(bigram):
    lm = InProcessCompleter.load(bigram, device="cpu")  # context 64
    logp = torch.log_softmax(bigram_table(CORPUS), dim=-1)
    cont = CORPUS[:150]
    (got,) = lm.score_many([ScoreRequest("\n", (cont,))])
    seq = ("\n" + cont).encode()
    assert got[0] == pytest.approx(sum(float(logp[a, b]) for a, b in zip(seq, seq[1:],
                                                                          strict=False)),
                                   abs=1e-3)


def test_python_block_samples_always_leave_the_block_able_to_parse(bigram):
    lm = InProcessCompleter.load(bigram, device="cpu")
    prompt = "import os\n\n\ndef h(a, b):\n    x = a + b\n"
    free = constrained = 0
    for seed in range(12):
        text = lm.complete(prompt, 160, 0.5, seed, constraint="python-block")
        whole = text[: text.rindex("\n") + 1] if "\n" in text else ""
        assert viable("def h(a, b):\n    x = a + b\n" + whole), (seed, text)
        assert all(not line or line[0] in " #" for line in whole.split("\n"))
        constrained += bool(whole.strip())
        raw = lm.complete(prompt, 160, 0.5, seed)
        raw_whole = raw[: raw.rindex("\n") + 1] if "\n" in raw else ""
        free += viable("def h(a, b):\n    x = a + b\n" + raw_whole)
    assert constrained >= 1  # it writes lines, not nothing
    assert free < 12  # the bigram alone often writes a block that can no longer parse


def test_viable_tells_a_block_that_can_still_parse_from_one_that_cannot():
    head = "def f(a):\n"
    for good in ("    b = a\n", "    if a:\n", "    x = (1,\n", '    s = """doc\n',
                 "    y = 1 + \\\n"):
        assert viable(head + good), good
    for bad in ("    x = = 1\n", "    return )\n", "    x = 1\n  y = 2\n", "  return (1))+(\n"):
        assert not viable(head + bad), bad
    assert block_start("import os\n\n\ndef f(a):\n    b = a\n") == 0


def test_an_unknown_constraint_is_a_codelm_error(tiny):
    with pytest.raises(CodeLMError, match="constraint"):
        InProcessCompleter.load(tiny).complete("x", 4, constraint="json")


def test_an_open_bracket_is_viable_only_when_closing_it_can_parse():
    head = "def f(a):\n"
    for good in ("    y = foo(a,\n", "    z = [i for i in\n", "    d = {'k':\n"):
        assert viable(head + good), good
    for bad in ("    nun  sesem(s,  det = 1,  =(\n", "    x = (1 2,\n", "    q = (\x13\n"):
        assert not viable(head + bad), bad

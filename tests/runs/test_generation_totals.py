"""What a run's generation calls add up to: tokens, rejections by reason, cost; and the CLI that
prints one call whole."""

from __future__ import annotations

import json

from typer.testing import CliRunner

from orchestrator.cli.app import app
from orchestrator.generators.base import GenerationCall
from orchestrator.runs.report import _generation
from orchestrator.runs.store import Store
from orchestrator.runs.summary import generation, markdown, tokens_line
from tests.evolution.quickprog import write_quick_program


def _call(tin: int, tout: int, reasoning: int = 0, **kw) -> GenerationCall:
    return GenerationCall("openai", "m", "the prompt", kw.pop("response", "the answer"),
                          tokens_in=tin, tokens_out=tout, tokens_reasoning=reasoning, **kw)


def _store(tmp_path, config: dict) -> Store:
    program = write_quick_program(tmp_path / "quick")
    store = Store(tmp_path / "r", create=True)
    store.init_run(program.root, json.dumps(config))
    store.add_variant(vid="seed", full_hash="s" * 16, parent_id=None, files={"a.py": "x = 1\n"},
                      diff="", seed_diff="", call=None, seeds=[(0, "first")])
    store.add_call(_call(1000, 200, 50, response="no blocks"), "seed", "rejected",
                   rejection="no_edit: the answer holds no SEARCH/REPLACE block")
    store.add_call(_call(1000, 4000, finish_reason="length"), "seed", "rejected",
                   rejection="truncated: the answer was cut at the token limit")
    store.add_call(_call(900, 100), "seed", "rejected", rejection="no_edit: again")
    store.add_call(_call(0, 0, error="attempt 1: ConnectionRefusedError"), "seed", "rejected",
                   rejection="generation_error: attempt 1: ConnectionRefusedError")
    store.add_call(_call(800, 300), "seed", "duplicate", variant_id="abc")
    store.add_variant(vid="kid", full_hash="k" * 16, parent_id="seed", files={"a.py": "x = 2\n"},
                      diff="-x = 1\n+x = 2\n", seed_diff="", call=_call(700, 90),
                      seeds=[(0, "first")])
    return store


def test_totals_count_tokens_and_rejections_by_reason(tmp_path):
    store = _store(tmp_path, {})
    totals = store.call_totals()
    assert totals["calls"] == 6 and totals["variants"] == 1 and totals["errors"] == 1
    assert (totals["tokens_in"], totals["tokens_out"], totals["tokens_reasoning"]) == (
        4400, 4690, 50)
    assert totals["rejections"] == {"no_edit": 2, "duplicate": 1, "generation_error": 1,
                                    "truncated": 1}
    gen = generation(store)
    assert gen["cost_usd"] is None and tokens_line(gen) == "tokens 4400 in, 4690 out (50 reasoning)"
    assert store.last_rejection() == "duplicate"


def test_a_price_gives_the_cost_in_summary_and_report(tmp_path):
    store = _store(tmp_path, {"generator": {"price": {"input_per_1m": 2.5,
                                                      "output_per_1m": 10.0}}})
    gen = generation(store)
    assert abs(gen["cost_usd"] - (4400 * 2.5 + 4690 * 10.0) / 1e6) < 1e-12
    assert tokens_line(gen).endswith(", $0.0579")
    data = {"run": "r", "program": "p", "metric": "m", "goal": "minimize", "noise": None,
            "seed": None, "best": None, "gain": None, "gain_in_noise": None,
            "counts": {"variants": 2, "evaluations": 2, "statuses": {}, "calls": {}},
            "generation": gen}
    assert "rejections: no_edit: 2, duplicate: 1, generation_error: 1, truncated: 1" in \
        markdown(data)
    assert "$0.0579" in _generation(gen) and "truncated: 1" in _generation(gen)


def test_show_prints_a_call_whole(tmp_path):
    store = _store(tmp_path, {})
    (cut,) = [c for c in store.calls() if c["finish_reason"] == "length"]
    store.close()
    cli = CliRunner()
    out = cli.invoke(app, ["show", str(tmp_path / "r"), f"call:{cut['id']}"])
    assert out.exit_code == 0, out.output
    assert "finish length" in out.output and "truncated: the answer was cut" in out.output
    assert "the prompt" in out.output and "the answer" in out.output
    bad = cli.invoke(app, ["show", str(tmp_path / "r"), "call:x"])
    assert bad.exit_code == 1 and "call:N" in bad.output
    missing = cli.invoke(app, ["show", str(tmp_path / "r"), "call:999"])
    assert missing.exit_code == 1 and "no generation call 999" in missing.output


def test_show_variant_call_prints_the_call_that_wrote_it(tmp_path):
    _store(tmp_path, {}).close()
    cli = CliRunner()
    out = cli.invoke(app, ["show", str(tmp_path / "r"), "kid", "--call"])
    assert out.exit_code == 0, out.output
    assert "outcome variant" in out.output and "700 in, 90 out" in out.output
    seed = cli.invoke(app, ["show", str(tmp_path / "r"), "seed", "--call"])
    assert seed.exit_code == 0 and "no generation call wrote this variant" in seed.output

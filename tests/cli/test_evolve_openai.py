"""``selfprog evolve`` with the ``openai`` backend against a scripted OpenAI-compatible server
on loopback (SSE streaming) and real containers: a child crowned from the model's edit, the
refused answers stored whole with their reasons, token totals in summary.json; and the ways a
run fails loudly: a dead endpoint in seconds, a model that never proposes anything valid."""

from __future__ import annotations

import json
import socket
import time

import pytest
from typer.testing import CliRunner

from orchestrator.cli.app import app
from orchestrator.runs.store import Store
from tests.evolution.quickprog import remove_quick_images, write_quick_program
from tests.generators.scripted_server import Answer, Script, ScriptedServer

GOOD = """I will move both numbers to where the loss is lowest.

train.py
<<<<<<< SEARCH
X = 0.0  # search: float[-3, 3]
Y = 0.0  # search: float[-3, 3]
=======
X = 1.5  # search: float[-3, 3]
Y = -1.0  # search: float[-3, 3]
>>>>>>> REPLACE
"""
CUT = GOOD.replace("1.5", "1.4")  # a valid edit, but the server says it hit the token limit


@pytest.fixture(autouse=True)
def _no_env(monkeypatch):
    for name in ("OPENAI_BASE_URL", "OPENAI_MODEL", "OPENAI_API_KEY"):
        monkeypatch.delenv(name, raising=False)


def _evolve(cli: CliRunner, program, runs, base_url: str, *extra: str, live: bool = False):
    return cli.invoke(app, ["evolve", "--program", str(program.root), "--variants", "1",
                            "--generator", "openai", "--run-id", "lm",
                            "--live" if live else "--no-live",
                            "--set", f'runs_dir="{runs}"',
                            "--set", f'generator.openai.base_url="{base_url}"',
                            "--set", "generator.openai.retries=0", *extra])


@pytest.mark.docker
@pytest.mark.slow
def test_a_child_is_crowned_from_an_lm_edit_and_refused_answers_are_stored(
        tmp_path, docker_client, runtime_image):
    program = write_quick_program(tmp_path / "quick", nonce=f"openai {time.time()}")
    runs = tmp_path / "runs"
    script = Script([Answer(text="Sorry, I cannot help with that.", completion_tokens=9),
                     Answer(text=CUT, finish_reason="length", completion_tokens=4096),
                     Answer(text=GOOD, reasoning="The minimum is at (1.5, -1).",
                            prompt_tokens=700, completion_tokens=80, reasoning_tokens=12)])
    cli = CliRunner()
    try:
        with ScriptedServer(script) as server:
            # no /v1, no model: both found; no terminal, so a progress line per evaluation
            done = _evolve(cli, program, runs, server.root, live=True)
        assert done.exit_code == 0, done.output
        assert "rejected: no_edit 1, truncated 1" in done.output  # the progress line
        summary = json.loads((runs / "lm" / "summary.json").read_text())
        assert summary["best"]["id"] != summary["seed"]["id"], summary
        assert summary["best"]["value"] < 0.01 < summary["seed"]["value"]
        assert "+X = 1.5" in (runs / "lm" / "best.diff").read_text()
        gen = summary["generation"]
        assert gen["tokens_in"] == 100 + 100 + 700 and gen["tokens_out"] == 9 + 4096 + 80
        assert gen["tokens_reasoning"] == 12
        assert gen["rejections"] == {"no_edit": 1, "truncated": 1}
        assert "rejections: no_edit: 1, truncated: 1" in (runs / "lm" / "summary.md").read_text()
        assert all(r["model"] == "scripted-coder" and r["stream"] for r in script.requests)

        store = Store(runs / "lm")
        try:
            calls = [store.call(c["id"]) for c in store.calls()]
        finally:
            store.close()
        assert [c["outcome"] for c in calls] == ["rejected", "rejected", "variant"]
        assert calls[0]["response"] == "Sorry, I cannot help with that."
        assert calls[0]["rejection"].startswith("no_edit:")
        assert calls[1]["response"] == CUT and calls[1]["finish_reason"] == "length"
        assert calls[1]["rejection"].startswith("truncated:")
        assert calls[2]["tokens_reasoning"] == 12 and "minimum" not in calls[2]["response"]
    finally:
        remove_quick_images(docker_client)


@pytest.mark.docker
def test_a_dead_endpoint_fails_in_seconds_naming_the_fix(tmp_path):
    program = write_quick_program(tmp_path / "quick")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        dead = f"http://127.0.0.1:{s.getsockname()[1]}/v1"
    started = time.monotonic()
    done = _evolve(CliRunner(), program, tmp_path / "runs", dead)
    assert time.monotonic() - started < 30
    assert done.exit_code == 2, done.output
    assert "does not answer" in done.output and "OPENAI_BASE_URL" in done.output


@pytest.mark.docker
@pytest.mark.slow
def test_a_model_that_never_proposes_anything_valid_exits_non_zero(
        tmp_path, docker_client, runtime_image):
    program = write_quick_program(tmp_path / "quick", nonce=f"openai-none {time.time()}")
    runs = tmp_path / "runs"
    script = Script([Answer(text="I would rather not edit anything.")])
    try:
        with ScriptedServer(script) as server:
            done = _evolve(CliRunner(), program, runs, server.v1,
                           "--set", "budget.max_rejections=3")
        assert done.exit_code == 5, done.output
        assert "no valid proposal in 3 call(s) (3 no_edit)" in done.output
        assert json.loads((runs / "lm" / "summary.json").read_text())["generation"][
            "rejections"] == {"no_edit": 3}
    finally:
        remove_quick_images(docker_client)


def _edit(x: str) -> str:
    return GOOD.replace("X = 1.5", f"X = {x}").replace("Y = -1.0", "Y = 0.0")


@pytest.mark.docker
@pytest.mark.slow
def test_a_token_budget_stops_proposing_and_says_so(tmp_path, docker_client, runtime_image):
    program = write_quick_program(tmp_path / "quick", nonce=f"openai-budget {time.time()}")
    runs = tmp_path / "runs"
    script = Script([Answer(text=_edit(str(x))) for x in (0.5, 1.0, 1.2, 1.4)])
    try:
        with ScriptedServer(script) as server:
            done = _evolve(CliRunner(), program, runs, server.v1,
                           "--variants", "4", "--set", "generator.budget.tokens=150")
        assert done.exit_code == 0, done.output
        assert "finished (token budget (240 of 150 tokens used))" in done.output
        assert len(script.requests) == 2  # 120 tokens each: the second call spends the budget
        summary = json.loads((runs / "lm" / "summary.json").read_text())
        assert summary["counts"]["variants"] == 3 and summary["counts"]["pending"] == 0
        assert summary["generation"]["tokens_in"] + summary["generation"]["tokens_out"] == 240
    finally:
        remove_quick_images(docker_client)


def test_a_money_budget_needs_a_price():
    from pydantic import ValidationError

    from orchestrator.generators.config import GeneratorConfig

    with pytest.raises(ValidationError, match="needs generator.price"):
        GeneratorConfig.model_validate({"budget": {"usd": 1.0}})
    priced = GeneratorConfig.model_validate({"budget": {"usd": 1.0}, "price": {
        "input_per_1m": 3.0, "output_per_1m": 15.0}})
    assert priced.price is not None and priced.price.cost(1_000_000, 100_000) == 4.5


@pytest.mark.docker
@pytest.mark.slow
def test_a_server_that_only_fails_stops_the_run_after_a_few_calls(
        tmp_path, docker_client, runtime_image):
    program = write_quick_program(tmp_path / "quick", nonce=f"openai-503 {time.time()}")
    script = Script([Answer(status=503, error="overloaded, try later")])
    try:
        with ScriptedServer(script) as server:
            done = _evolve(CliRunner(), program, tmp_path / "runs", server.v1)
        assert done.exit_code == 5, done.output
        assert len(script.requests) == 5  # MAX_CALL_ERRORS, not budget.max_rejections (50)
        assert "no valid proposal in 5 call(s) (5 generation_error)" in done.output
        assert "generator failing: 5 calls in a row got no answer" in done.output
        assert "overloaded, try later" in done.output
    finally:
        remove_quick_images(docker_client)

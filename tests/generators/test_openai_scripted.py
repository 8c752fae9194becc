"""``openai`` against a scripted OpenAI-compatible server on loopback (SSE streaming): the
configuration traps it forgives, the answers it refuses, and what every call records."""

from __future__ import annotations

import json
import socket
import socketserver
import threading
import time

import pytest

from orchestrator.errors import ConfigError
from orchestrator.generators.base import GenerationRequest, Parent
from orchestrator.generators.config import GeneratorConfig, OpenAIConfig
from orchestrator.generators.openai_compat import OpenAIGenerator
from tests.generators.scripted_server import Answer, Script, ScriptedServer

EDIT = """train.py
<<<<<<< SEARCH
{old}
=======
{new}
>>>>>>> REPLACE
"""


@pytest.fixture(autouse=True)
def _no_env(monkeypatch):
    for name in ("OPENAI_BASE_URL", "OPENAI_MODEL", "OPENAI_API_KEY"):
        monkeypatch.delenv(name, raising=False)


def _gen(base_url: str | None, **endpoint) -> OpenAIGenerator:
    settings = {"context_tokens": 8192, "retries": 0, **endpoint}
    return OpenAIGenerator(GeneratorConfig(backend="openai",
                                           openai=OpenAIConfig(base_url=base_url, **settings)))


def _propose(gen: OpenAIGenerator, toy):
    (p,) = gen.propose(GenerationRequest(toy, (Parent("p0", toy.source_files()),)))
    return p


def _valid_edit(toy) -> str:
    line = next(s for s in toy.source_files()["train.py"].splitlines() if s.startswith("N_LAYER"))
    return EDIT.format(old=line, new=line.replace("2", "3", 1))


def test_streamed_answer_keeps_reasoning_apart_and_records_the_whole_call(toy):
    script = Script([Answer(text=_valid_edit(toy), reasoning="I think N_LAYER should grow. " * 4,
                            prompt_tokens=900, completion_tokens=300, reasoning_tokens=120)])
    with ScriptedServer(script) as server:
        p = _propose(_gen(server.v1, model="scripted-coder"), toy)
    sent = script.requests[0]
    assert sent["stream"] is True and sent["stream_options"] == {"include_usage": True}
    assert sent["max_tokens"] == 4096  # the default budget (8192), capped at half the context
    assert p.valid, p.rejection
    call = p.call
    assert "should grow" not in call.response and "<<<<<<< SEARCH" in call.response
    assert (call.tokens_in, call.tokens_out, call.tokens_reasoning) == (900, 300, 120)
    assert call.finish_reason == "stop" and call.kind == "edit" and call.error is None
    assert call.model == "scripted-coder" and "N_LAYER" in call.prompt


def test_base_url_without_v1_is_found_under_v1_and_remembered(toy):
    script = Script([Answer(text="no edit here")])
    with ScriptedServer(script) as server:
        gen = _gen(server.root, model="scripted-coder")
        _propose(gen, toy)
        _propose(gen, toy)
    assert script.paths == ["/chat/completions", "/v1/chat/completions",
                            "/v1/chat/completions"]


def test_model_and_endpoint_come_from_the_environment_or_the_server(toy, monkeypatch):
    script = Script([Answer(text="nothing")], models=["only-one"])
    with ScriptedServer(script) as server:
        monkeypatch.setenv("OPENAI_BASE_URL", server.root)
        gen = _gen(None)
        assert gen.check() == f"only-one at {server.v1}"
        p = _propose(gen, toy)
        assert script.requests[0]["model"] == "only-one" and p.call.model == "only-one"
        monkeypatch.setenv("OPENAI_MODEL", "from-env")
        assert _gen(None).model_name == "from-env"


def test_check_names_the_fix(toy):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        dead = f"http://127.0.0.1:{s.getsockname()[1]}/v1"
    started = time.monotonic()
    with pytest.raises(ConfigError, match="set generator.openai.base_url or OPENAI_BASE_URL"):
        _gen(dead, model="m").check()
    assert time.monotonic() - started < 5
    with ScriptedServer(Script([Answer()], models=["a", "b"])) as server:
        with pytest.raises(ConfigError, match=r"serves several \(a, b\)"):
            _gen(server.v1).check()
        with pytest.raises(ConfigError, match=r"'c' is not served .*a, b.*OPENAI_MODEL"):
            _gen(server.v1, model="c").check()
        assert _gen(server.v1, model="b").check().startswith("b at ")


def test_max_completion_tokens_is_sent_when_the_server_asks_for_it(toy):
    script = Script([Answer(text="no edit")], completion_tokens_only=True)
    with ScriptedServer(script) as server:
        gen = _gen(server.v1, model="m")
        p = _propose(gen, toy)
        _propose(gen, toy)
    assert p.call.error is None and p.call.response == "no edit"
    assert "max_tokens" in script.requests[0]
    assert all("max_completion_tokens" in r and "max_tokens" not in r
               for r in script.requests[1:]) and len(script.requests) == 3


def test_openai_own_api_gets_max_completion_tokens_at_once():
    gen = _gen("https://api.openai.com/v1", model="gpt-x")
    assert gen._token_param == "max_completion_tokens"


def test_too_long_prompt_is_a_context_rejection_asked_once(toy):
    script = Script([Answer(status=400, error="This model's maximum context length is 4096 "
                                              "tokens. However, you requested 9000 tokens.")])
    with ScriptedServer(script) as server:
        p = _propose(_gen(server.v1, model="m", retries=3, backoff_s=0.01), toy)
    assert p.rejection.startswith("context:") and "maximum context length" in p.rejection
    assert len(script.requests) == 1


def test_the_context_the_server_states_bounds_the_prompt_and_the_answer(toy):
    script = Script([Answer(status=400, error="This model's maximum context length is 4096 "
                                              "tokens. However, you requested 9000 tokens."),
                     Answer(text="no edit")], model_context=None)
    with ScriptedServer(script) as server:
        gen = _gen(server.v1, model="m", context_tokens=16384)
        _propose(gen, toy)
        assert gen.context_tokens == 4096  # learnt from the error: the next prompt fits
        _propose(gen, toy)
    assert script.requests[1]["max_tokens"] == 2048
    with ScriptedServer(Script([Answer()], models=["m"], model_context=2048)) as server:
        gen = _gen(server.v1, model="m", context_tokens=16384)
        gen.check()
        assert gen.context_tokens == 2048 and gen.answer_budget() == 1024


def test_token_counts_are_calibrated_from_the_server_usage(toy):
    with ScriptedServer(Script([Answer(text="no edit", prompt_tokens=500)])) as server:
        gen = _gen(server.v1, model="m")
        text = "x" * 3000
        assert gen.count_tokens(text) == 1001  # three characters a token, before any call
        p = _propose(gen, toy)
    ratio = len(p.call.prompt) / 500
    assert gen.count_tokens(text) == int(3000 / ratio * 1.1) + 16


@pytest.mark.parametrize("stream", [True, False])
def test_answer_cut_at_the_token_limit_is_refused_as_truncated(toy, stream):
    script = Script([Answer(text=_valid_edit(toy), finish_reason="length")])
    with ScriptedServer(script) as server:
        p = _propose(_gen(server.v1, model="m", stream=stream), toy)
    assert p.call.finish_reason == "length"
    assert p.rejection.startswith("truncated:") and "token limit" in p.rejection
    assert p.call.response.startswith("train.py")  # the text is kept for reading


def test_slow_stream_is_bounded_per_chunk_not_per_answer(toy):
    text = _valid_edit(toy)  # ~10 chunks, 0.3 s apart: 3 s in all, over the 1 s read timeout
    script = Script([Answer(text=text, chunk_delay_s=0.3)])
    with ScriptedServer(script) as server:
        p = _propose(_gen(server.v1, model="m", read_timeout_s=1.0, deadline_s=20), toy)
    assert p.call.error is None and p.valid, p.rejection
    assert p.call.latency_s > 1.0


def test_empty_streamed_answer_is_an_answer_with_no_edit_not_a_failure(toy):
    with ScriptedServer(Script([Answer(text="")])) as server:
        p = _propose(_gen(server.v1, model="m"), toy)
    assert p.call.error is None and p.rejection.startswith("no_edit:")


def test_auto_takes_the_endpoint_from_the_environment_and_says_so(monkeypatch):
    from orchestrator.generators.auto import choose

    monkeypatch.setenv("OPENAI_BASE_URL", "http://127.0.0.1:9")
    gen, reason = choose(GeneratorConfig())
    assert gen.name == "openai"
    assert reason == ("generator: openai (the one model the server lists at "
                      "http://127.0.0.1:9): OPENAI_BASE_URL is set in the environment")


def test_propose_whole_prints_each_call(toy):
    from typer.testing import CliRunner

    from orchestrator.cli.app import app

    script = Script([Answer(text=_valid_edit(toy), finish_reason="length", completion_tokens=77)])
    with ScriptedServer(script) as server:
        out = CliRunner().invoke(app, ["propose", str(toy.root), "--backend", "openai",
                                       "--base-url", server.root, "--whole"])
    assert out.exit_code == 0, out.output
    assert "proposal 0: truncated:" in out.output and "finish length" in out.output
    assert "77 out" in out.output and "<<<<<<< SEARCH" in out.output


class _CutStream(socketserver.BaseRequestHandler):
    """Starts a stream, sends one chunk, and hangs up before any finish reason or [DONE]."""

    def handle(self):
        self.request.recv(65536)
        chunk = json.dumps({"choices": [{"index": 0, "delta": {"content": "train.py\n<<<"},
                                         "finish_reason": None}]})
        self.request.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\n"
                             b"Connection: close\r\n\r\ndata: " + chunk.encode() + b"\n\n")


def test_a_stream_cut_before_its_end_is_an_error_not_an_answer(toy):
    server = socketserver.ThreadingTCPServer(("127.0.0.1", 0), _CutStream)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        p = _propose(_gen(f"http://127.0.0.1:{server.server_address[1]}/v1", model="m",
                          retries=1, backoff_s=0.01), toy)
    finally:
        server.shutdown()
        server.server_close()
    assert p.rejection.startswith("generation_error:") and "attempt 2" in p.rejection
    assert "stream ended before the answer did" in p.rejection and p.call.response == ""

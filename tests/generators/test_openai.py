"""``openai`` against real servers on loopback: ``transformers serve`` with a tiny model, and
servers that stall, trickle, fail or refuse — a stalled call costs at most its deadline."""

from __future__ import annotations

import json
import socket
import socketserver
import subprocess
import sys
import threading
import time
import urllib.request
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path

import pytest

from orchestrator.generators.base import GenerationRequest, Parent
from orchestrator.generators.config import GeneratorConfig, OpenAIConfig
from orchestrator.generators.openai_compat import OpenAIGenerator


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _generator(base_url: str, **endpoint) -> OpenAIGenerator:
    settings = {"model": "m", "context_tokens": 4096, "retries": 0, **endpoint}
    return OpenAIGenerator(GeneratorConfig(backend="openai", max_new_tokens=12,
                                           openai=OpenAIConfig(base_url=base_url, **settings)))


@pytest.fixture(scope="module")
def served(tiny_lm, tmp_path_factory):
    """`transformers serve` with the tiny model on a loopback port; stopped after the module."""
    port = _free_port()
    log = tmp_path_factory.mktemp("serve") / "serve.log"
    cli = Path(sys.executable).parent / "transformers"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [str(cli), "serve", str(tiny_lm), "--host", "127.0.0.1", "--port", str(port),
             "--device", "cpu"], stdout=out, stderr=subprocess.STDOUT,
        )
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{port}/v1/models", timeout=2).read()
                break
            except OSError as exc:
                if proc.poll() is not None or time.monotonic() > deadline:
                    pytest.fail(f"transformers serve did not start ({exc}); log: {log}\n"
                                f"{log.read_text()[-2000:]}")
                time.sleep(0.3)
        yield f"http://127.0.0.1:{port}/v1", str(tiny_lm)
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@pytest.mark.slow
def test_real_server_answers_are_recorded_as_proposals(served, toy):
    base_url, model = served
    gen = _generator(base_url, model=model)
    parent = Parent("p0", toy.source_files(), {"val_bpb": 1.5})
    proposals = gen.propose(GenerationRequest(toy, (parent,), n=2, seed=3))
    assert len(proposals) == 2
    for p in proposals:
        call = p.call
        assert call.error is None, call.error
        assert call.backend == "openai" and call.model == model
        assert "N_LAYER = 2" in call.prompt and call.latency_s > 0
        assert call.tokens_in > 500 and 0 < call.tokens_out <= 12  # the server's usage numbers
        assert p.valid or p.rejection  # a random model's answer is a rejection, not a crash


class _Server(socketserver.ThreadingTCPServer):
    daemon_threads = True
    allow_reuse_address = True


def _serve(handler) -> tuple[_Server, str]:
    server = _Server(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, f"http://127.0.0.1:{server.server_address[1]}/v1"


class _Trickle(socketserver.BaseRequestHandler):
    """Answers headers, then one body byte every 0.2 s: no read timeout ever fires."""

    def handle(self):
        self.request.recv(65536)
        self.request.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                             b"Content-Length: 100000\r\n\r\n")
        for _ in range(600):
            try:
                self.request.sendall(b" ")
            except OSError:
                return  # the client gave up and shut the socket: that is the point
            time.sleep(0.2)


class _Silent(socketserver.BaseRequestHandler):
    """Reads the request and never answers."""

    def handle(self):
        self.request.recv(65536)
        time.sleep(30)


@pytest.mark.parametrize("handler", [_Trickle, _Silent])
def test_stalled_server_costs_at_most_the_deadline(handler, toy):
    server, url = _serve(handler)
    try:
        gen = _generator(url, deadline_s=1.5, read_timeout_s=60, retries=3)
        started = time.monotonic()
        (p,) = gen.propose(GenerationRequest(toy, (Parent("p0", toy.source_files()),)))
        elapsed = time.monotonic() - started
    finally:
        server.shutdown()
        server.server_close()
    assert 1.4 < elapsed < 3.0, elapsed
    assert p.rejection.startswith("generation_error:") and "deadline" in p.rejection
    assert p.call.error and p.call.latency_s < 3.0
    time.sleep(0.5)
    assert not [t for t in threading.enumerate() if t.name == "openai-call" and t.is_alive()], \
        "the abandoned worker was woken and ended"


class _Flaky(BaseHTTPRequestHandler):
    """Fails the first request with the class's status, then answers a chat completion."""

    status = 503
    hits: list[str] = []

    def do_POST(self):  # noqa: N802 (the http.server API)
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        type(self).hits.append(self.headers.get("Authorization", ""))
        if len(type(self).hits) == 1:
            self.send_response(type(self).status)
            self.end_headers()
            self.wfile.write(b"busy")
            return
        answer = {"choices": [{"message": {"role": "assistant", "content": body["model"]}}],
                  "usage": {"prompt_tokens": 7, "completion_tokens": 3}}
        data = json.dumps(answer).encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args):
        return None


@pytest.mark.parametrize(("status", "hits", "ok"), [(503, 2, True), (429, 2, True),
                                                     (400, 1, False)])
def test_retries_server_errors_not_client_errors(status, hits, ok, toy, monkeypatch):
    handler = type("Flaky", (_Flaky,), {"status": status, "hits": []})
    server = HTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    monkeypatch.setenv("TEST_KEY", "sk-test")
    try:
        gen = _generator(f"http://127.0.0.1:{server.server_address[1]}/v1", retries=2,
                         backoff_s=0.05, api_key_env="TEST_KEY")
        (p,) = gen.propose(GenerationRequest(toy, (Parent("p0", toy.source_files()),)))
    finally:
        server.shutdown()
        server.server_close()
    assert len(handler.hits) == hits and handler.hits[0] == "Bearer sk-test"
    if ok:
        assert p.call.error is None and p.call.response == "m"
        assert (p.call.tokens_in, p.call.tokens_out) == (7, 3)
        assert p.rejection.startswith("no_edit:")
    else:
        assert p.rejection.startswith("generation_error:") and "HTTP 400" in p.rejection


def test_refused_connection_is_retried_then_recorded(toy):
    gen = _generator(f"http://127.0.0.1:{_free_port()}/v1", retries=2, backoff_s=0.05)
    started = time.monotonic()
    (p,) = gen.propose(GenerationRequest(toy, (Parent("p0", toy.source_files()),)))
    assert time.monotonic() - started < 2
    assert p.rejection.startswith("generation_error:") and "attempt 3" in p.rejection


class _Canned(BaseHTTPRequestHandler):
    """Answers every request with the class's ``answer`` as a 200 JSON body."""

    answer: dict = {}

    def do_POST(self):  # noqa: N802 (the http.server API)
        self.rfile.read(int(self.headers["Content-Length"]))
        data = json.dumps(type(self).answer).encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args):
        return None


def _propose_against(answer: dict, toy):
    server = HTTPServer(("127.0.0.1", 0), type("Canned", (_Canned,), {"answer": answer}))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        gen = _generator(f"http://127.0.0.1:{server.server_address[1]}/v1")
        (p,) = gen.propose(GenerationRequest(toy, (Parent("p0", toy.source_files()),)))
    finally:
        server.shutdown()
        server.server_close()
    return p


def test_content_parts_are_joined_and_odd_usage_is_counted_instead(toy):
    parts = [{"type": "text", "text": "no "}, {"type": "image_url", "image_url": {}},
             {"type": "text", "text": "edit"}]
    p = _propose_against({"choices": [{"message": {"content": parts}}],
                          "usage": {"prompt_tokens": "seven", "completion_tokens": [3]}}, toy)
    assert p.call.error is None and p.call.response == "no edit"
    assert p.call.tokens_in > 0 and p.call.tokens_out > 0
    assert p.rejection.startswith("no_edit:")


@pytest.mark.parametrize("content", [{"text": "x"}, 42, [{"type": "text", "text": 5}], ["x"]])
def test_content_neither_text_nor_text_parts_is_a_recorded_failure(content, toy):
    p = _propose_against({"choices": [{"message": {"content": content}}]}, toy)
    assert p.call.error and p.rejection.startswith("generation_error:")
    assert "malformed response" in p.rejection

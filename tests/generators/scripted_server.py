"""A scripted OpenAI-compatible server on loopback, for tests: stdlib ``http.server`` in a thread.

It serves ``GET /v1/models`` and ``POST /v1/chat/completions`` (nothing at the root, as vLLM and
llama.cpp do), streams server-sent events when asked (``stream: true``), otherwise answers JSON,
and gives its scripted answers in order (the last one again once the script runs out). It keeps
every request body it received, so a test can check what the client sent.
"""

from __future__ import annotations

import json
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


@dataclass
class Answer:
    """One scripted reply: an answer text, or an HTTP error ``status`` with ``error`` as body."""

    text: str = ""
    finish_reason: str = "stop"
    reasoning: str = ""
    prompt_tokens: int = 100
    completion_tokens: int = 20
    reasoning_tokens: int | None = None
    status: int = 200
    error: str = ""
    chunk_delay_s: float = 0.0
    """Pause between two streamed chunks."""


@dataclass
class Script:
    answers: list[Answer]
    models: list[str] = field(default_factory=lambda: ["scripted-coder"])
    model_context: int | None = None
    """Listed as each model's ``max_model_len`` (as vLLM does) when set."""
    completion_tokens_only: bool = False
    """Refuse ``max_tokens`` with a 400 naming ``max_completion_tokens`` (as OpenAI's API does
    for its reasoning models)."""
    requests: list[dict] = field(default_factory=list)
    paths: list[str] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def next(self) -> Answer:
        with self.lock:
            done = sum(1 for r in self.requests if "messages" in r) - 1
            return self.answers[min(done, len(self.answers) - 1)]


class _Handler(BaseHTTPRequestHandler):
    script: Script
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):
        return None

    def _json(self, status: int, payload: object) -> None:
        data = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self):  # noqa: N802 (the http.server API)
        self.script.paths.append(self.path)
        if self.path != "/v1/models":
            return self._json(404, {"error": {"message": f"no route {self.path}"}})
        extra = {"max_model_len": self.script.model_context} if self.script.model_context else {}
        return self._json(200, {"object": "list", "data": [
            {"id": m, "object": "model", **extra} for m in self.script.models]})

    def do_POST(self):  # noqa: N802 (the http.server API)
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        self.script.paths.append(self.path)
        if self.path != "/v1/chat/completions":
            return self._json(404, {"error": {"message": f"no route {self.path}"}})
        with self.script.lock:
            self.script.requests.append(body)
        if self.script.completion_tokens_only and "max_tokens" in body:
            return self._json(400, {"error": {"message": "Unsupported parameter: 'max_tokens' "
                                              "is not supported with this model. Use "
                                              "'max_completion_tokens' instead."}})
        answer = self.script.next()
        if answer.status != 200:
            return self._json(answer.status, {"error": {"message": answer.error}})
        usage: dict = {"prompt_tokens": answer.prompt_tokens,
                       "completion_tokens": answer.completion_tokens}
        if answer.reasoning_tokens is not None:
            usage["completion_tokens_details"] = {"reasoning_tokens": answer.reasoning_tokens}
        if not body.get("stream"):
            message = {"role": "assistant", "content": answer.text}
            if answer.reasoning:
                message["reasoning_content"] = answer.reasoning
            return self._json(200, {"choices": [{"index": 0, "message": message,
                                                 "finish_reason": answer.finish_reason}],
                                    "usage": usage})
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.send_header("Connection", "close")
        self.end_headers()
        deltas = [{"reasoning_content": answer.reasoning[i:i + 16]}
                  for i in range(0, len(answer.reasoning), 16)]
        deltas += [{"content": answer.text[i:i + 16]} for i in range(0, len(answer.text), 16)]
        for n, delta in enumerate(deltas):
            last = n == len(deltas) - 1
            chunk = {"choices": [{"index": 0, "delta": delta,
                                  "finish_reason": answer.finish_reason if last else None}]}
            self._event(chunk)
            if answer.chunk_delay_s:
                time.sleep(answer.chunk_delay_s)
        if (body.get("stream_options") or {}).get("include_usage"):
            self._event({"choices": [], "usage": usage})
        self.wfile.write(b"data: [DONE]\n\n")
        self.wfile.flush()
        self.close_connection = True

    def _event(self, payload: dict) -> None:
        self.wfile.write(b"data: " + json.dumps(payload).encode() + b"\n\n")
        self.wfile.flush()


class ScriptedServer:
    """``with ScriptedServer(script) as server:`` — ``server.root`` is ``http://127.0.0.1:PORT``
    (no ``/v1``), ``server.v1`` the same with it."""

    def __init__(self, script: Script):
        self.script = script
        handler = type("Handler", (_Handler,), {"script": script})
        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self.httpd.daemon_threads = True
        self.root = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.v1 = self.root + "/v1"

    def __enter__(self) -> ScriptedServer:
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()
        return self

    def __exit__(self, *exc) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()

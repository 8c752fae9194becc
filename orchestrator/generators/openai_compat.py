"""``openai``: any OpenAI-compatible chat endpoint (vLLM, Ollama, llama.cpp, OpenAI ...).

Standard library only. Each generation call has a hard deadline, enforced apart from the socket
timeouts: the attempts run in a worker thread, and when the deadline passes the caller stops
waiting, shuts the socket down (which wakes the worker) and records a ``generation_error``. A
server that trickles one byte a second, which no read timeout catches, still costs at most the
deadline. Connection errors, 429 and 5xx answers are retried with doubling backoff inside it.
"""

from __future__ import annotations

import contextlib
import http.client
import json
import os
import queue
import socket
import threading
import time
from urllib.parse import urlsplit

from orchestrator.errors import ConfigError
from orchestrator.generators.base import GenerationCall
from orchestrator.generators.config import GeneratorConfig
from orchestrator.generators.lm import LMGenerator
from orchestrator.generators.prompt import Prompt

_MAX_BODY = 16 * 1024 * 1024


class _CallFailed(Exception):
    """One attempt failed; ``retry`` says whether another attempt may succeed."""

    def __init__(self, message: str, retry: bool):
        super().__init__(message)
        self.retry = retry


class OpenAIGenerator(LMGenerator):
    """Chat completions from an OpenAI-compatible endpoint, one request per proposal."""

    name = "openai"

    def __init__(self, config: GeneratorConfig):
        super().__init__(config)
        self.endpoint = config.openai
        if not self.endpoint.base_url:
            raise ConfigError("generator.openai.base_url is not set")
        url = urlsplit(self.endpoint.base_url.rstrip("/"))
        if url.scheme not in ("http", "https") or not url.hostname:
            raise ConfigError(f"generator.openai.base_url {self.endpoint.base_url!r} is not an "
                              "http(s) URL")
        self._url = url
        self._host: str = url.hostname
        self.model_name = self.endpoint.model

    @property
    def context_tokens(self) -> int:
        return self.endpoint.context_tokens

    def complete(self, prompts: list[Prompt], seed: int) -> list[GenerationCall]:
        return [self.call(prompt, seed + i) for i, prompt in enumerate(prompts)]

    def call(self, prompt: Prompt, seed: int) -> GenerationCall:
        """One chat completion within the deadline; never raises for the server's behaviour."""
        body = {
            "model": self.endpoint.model,
            "messages": prompt.messages,
            "temperature": self.config.temperature,
            "max_tokens": self.answer_budget(),
            "seed": seed,
        }
        record = GenerationCall(self.name, self.endpoint.model, prompt.text, "")
        started = time.monotonic()
        deadline = started + self.endpoint.deadline_s
        live: dict[str, http.client.HTTPConnection] = {}
        answers: queue.Queue = queue.Queue(maxsize=1)

        def work() -> None:
            try:
                answers.put(self._attempts(body, deadline, live))
            except _CallFailed as exc:
                answers.put(exc)

        worker = threading.Thread(target=work, name="openai-call", daemon=True)
        worker.start()
        try:
            outcome = answers.get(timeout=self.endpoint.deadline_s)
        except queue.Empty:
            _abandon(live)
            outcome = _CallFailed(f"deadline of {self.endpoint.deadline_s:g}s passed", False)
        record.latency_s = time.monotonic() - started
        if isinstance(outcome, _CallFailed):
            record.error = str(outcome)
            return record
        text, usage = outcome
        record.response = text
        record.tokens_in = _tokens(usage.get("prompt_tokens")) or self.count_tokens(prompt.text)
        record.tokens_out = _tokens(usage.get("completion_tokens")) or self.count_tokens(text)
        return record

    def _attempts(self, body: dict, deadline: float,
                  live: dict[str, http.client.HTTPConnection]) -> tuple[str, dict]:
        wait, last = self.endpoint.backoff_s, "no attempt"
        for attempt in range(self.endpoint.retries + 1):
            if attempt:
                time.sleep(max(0.0, min(wait, deadline - time.monotonic())))
                wait *= 2
            if time.monotonic() >= deadline:
                break
            try:
                return self._post(body, live)
            except _CallFailed as exc:
                last = f"attempt {attempt + 1}: {exc}"
                if not exc.retry:
                    raise _CallFailed(last, False) from None
        raise _CallFailed(last, False)

    def _post(self, body: dict, live: dict[str, http.client.HTTPConnection]) -> tuple[str, dict]:
        url, ep = self._url, self.endpoint
        cls = http.client.HTTPSConnection if url.scheme == "https" else http.client.HTTPConnection
        conn = cls(self._host, url.port, timeout=ep.connect_timeout_s)
        live["conn"] = conn
        headers = {"Content-Type": "application/json"}
        key = os.environ.get(ep.api_key_env, "")
        if key:
            headers["Authorization"] = f"Bearer {key}"
        try:
            conn.connect()
            conn.sock.settimeout(ep.read_timeout_s)
            conn.request("POST", f"{url.path}/chat/completions", json.dumps(body), headers)
            response = conn.getresponse()
            data = response.read(_MAX_BODY + 1)
        except (OSError, http.client.HTTPException) as exc:
            raise _CallFailed(f"{type(exc).__name__}: {exc}", retry=True) from None
        finally:
            conn.close()
        if response.status != 200:
            snippet = data[:300].decode(errors="replace")
            retry = response.status == 429 or response.status >= 500
            raise _CallFailed(f"HTTP {response.status}: {snippet}", retry=retry)
        if len(data) > _MAX_BODY:
            raise _CallFailed(f"response over {_MAX_BODY} bytes", retry=False)
        return _content(data)


def _content(data: bytes) -> tuple[str, dict]:
    try:
        payload = json.loads(data)
        message = payload["choices"][0]["message"]
        text = _text(message.get("content"))
    except (ValueError, KeyError, IndexError, TypeError, AttributeError) as exc:
        raise _CallFailed(f"malformed response ({exc!r}): {data[:200]!r}", retry=False) from None
    usage = payload.get("usage")
    return text, usage if isinstance(usage, dict) else {}


def _text(content: object) -> str:
    """A message's content: a string, or a list of parts whose ``text`` parts are joined."""
    if content is None or isinstance(content, str):
        return content or ""
    if isinstance(content, list) and all(isinstance(part, dict) for part in content):
        texts = [part.get("text") for part in content if part.get("type", "text") == "text"]
        if all(isinstance(t, str) for t in texts):
            return "".join(texts)
    raise TypeError(f"content is neither text nor a list of text parts: {type(content).__name__}")


def _tokens(value: object) -> int | None:
    """A usage count the server sent, if it is a sensible number (else the caller counts)."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return int(value) if 0 <= value < 2**53 else None


def _abandon(live: dict[str, http.client.HTTPConnection]) -> None:
    """Wake a worker blocked on the socket: shut it down under it. The socket may already be
    closed by the worker itself, which is what OSError means here; nothing is lost either way."""
    conn = live.get("conn")
    sock = conn.sock if conn is not None else None
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.shutdown(socket.SHUT_RDWR)

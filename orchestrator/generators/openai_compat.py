"""``openai``: any OpenAI-compatible chat endpoint (vLLM, Ollama, llama.cpp, LM Studio, OpenAI).

Standard library only. Each generation call has a hard deadline, enforced apart from the socket
timeouts: the attempts run in a worker thread, and when the deadline passes the caller stops
waiting, shuts the socket down (which wakes the worker) and records a ``generation_error``. A
server that trickles one byte a second, which no read timeout catches, still costs at most the
deadline. Connection errors, 429 and 5xx answers are retried with doubling backoff inside it.

Answers are streamed (server-sent events) by default, so the read timeout bounds the silence
between two chunks rather than the whole answer; a server that answers with plain JSON anyway is
read as such. The configuration forgives the usual traps: ``base_url`` with or without ``/v1``
(a 404 at the root is retried once under ``/v1``, which is then kept), ``$OPENAI_BASE_URL``,
``$OPENAI_MODEL`` and the one model a server lists stand in for unset keys, and the answer-length
parameter switches between ``max_tokens`` and ``max_completion_tokens`` when a server's 400 names
the other. A prompt the server finds too long is a ``context`` failure, never retried.
"""

from __future__ import annotations

import contextlib
import http.client
import json
import os
import queue
import re
import socket
import threading
import time
from dataclasses import dataclass, field
from urllib.parse import SplitResult, urlsplit

from orchestrator.errors import ConfigError
from orchestrator.generators.base import GenerationCall
from orchestrator.generators.config import GeneratorConfig
from orchestrator.generators.lm import CONTEXT_ERROR, LMGenerator
from orchestrator.generators.prompt import Prompt

_MAX_BODY = 16 * 1024 * 1024
_TOKEN_PARAMS = ("max_tokens", "max_completion_tokens")
_CONTEXT_WORDS = re.compile(
    r"context[ _-]?(length|window|size)|maximum context|too many tokens|prompt is too long|"
    r"exceeds? the (model'?s? )?(maximum|max)|input is too long|n_ctx", re.IGNORECASE)
_STATED_LIMIT = re.compile(r"(?:maximum context length|context length|n_ctx)\D{0,20}(\d{3,7})",
                           re.IGNORECASE)
_PROBE_TIMEOUT_S = 10.0


class _CallFailed(Exception):
    """One attempt failed; ``retry`` says whether another attempt may succeed."""

    def __init__(self, message: str, retry: bool, status: int = 0):
        super().__init__(message)
        self.retry = retry
        self.status = status


@dataclass
class _Answer:
    text: str = ""
    reasoning: str = ""
    finish_reason: str | None = None
    usage: dict = field(default_factory=dict)


def endpoint_url(config: GeneratorConfig) -> str | None:
    """The endpoint the openai backend would call: the config's, else ``$OPENAI_BASE_URL``."""
    return config.openai.base_url or os.environ.get("OPENAI_BASE_URL") or None


class OpenAIGenerator(LMGenerator):
    """Chat completions from an OpenAI-compatible endpoint, one request per proposal."""

    name = "openai"

    def __init__(self, config: GeneratorConfig):
        super().__init__(config)
        self.endpoint = config.openai
        base = endpoint_url(config)
        if not base:
            raise ConfigError("no OpenAI-compatible endpoint: set generator.openai.base_url or "
                              "OPENAI_BASE_URL (e.g. http://127.0.0.1:8000/v1)")
        url = urlsplit(base.rstrip("/"))
        if url.scheme not in ("http", "https") or not url.hostname:
            raise ConfigError(f"generator.openai.base_url {base!r} is not an http(s) URL")
        self.base_url = base
        self._url: SplitResult = url
        self._host: str = url.hostname
        self._prefix = url.path.rstrip("/")
        self._prefix_known = self._prefix.endswith("/v1")
        self.model_name = self.endpoint.model or os.environ.get("OPENAI_MODEL") or ""
        param: str = self.endpoint.token_param
        if param == "auto":
            param = "max_completion_tokens" if self._host == "api.openai.com" else "max_tokens"
        self._token_param = param
        self._param_switched = False
        self._stream_options = True
        self._lock = threading.Lock()
        self._contexts: dict[str, int] = {}
        """Context length per model, where ``/models`` lists one."""
        self._server_context: int | None = None
        """The context length the server reports (``/models``) or a context error names."""
        self._chars_per_token: float | None = None
        """Characters per prompt token, measured from the server's ``usage`` (the smallest
        ratio seen: the safe side); None until a call reports it."""

    @property
    def context_tokens(self) -> int:
        """``context_tokens`` as configured, or less where the server says it has less."""
        if self._server_context is not None:
            return min(self.endpoint.context_tokens, self._server_context)
        return self.endpoint.context_tokens

    def count_tokens(self, text: str) -> int:
        """Three characters a token until the server's ``usage`` tells the real ratio; then
        that ratio, with a tenth and 16 tokens to spare (the chat template's own tokens)."""
        if self._chars_per_token is None:
            return super().count_tokens(text)
        return int(len(text) / self._chars_per_token * 1.1) + 16

    def _learn(self, prompt: Prompt, usage: dict) -> None:
        served = _tokens(usage.get("prompt_tokens"))
        if served and len(prompt.text) > 200:
            ratio = len(prompt.text) / served
            with self._lock:
                if self._chars_per_token is None or ratio < self._chars_per_token:
                    self._chars_per_token = max(ratio, 0.5)

    # -- the start-of-run check ----------------------------------------------------------------
    def check(self) -> str:
        """Ask the server for its models, in seconds: the endpoint answers and the model exists.

        Returns a one-line description of what was found (for the log).

        Raises:
            ConfigError: nothing answers, the key is refused, or the model is not served; the
                message names the setting to fix.
        """
        try:
            models = self._models()
        except _CallFailed as exc:
            if exc.status in (401, 403):
                raise ConfigError(f"the openai endpoint {self.base_url} refused the key ({exc}): "
                                  f"set {self.endpoint.api_key_env} (generator.openai."
                                  "api_key_env names the variable)") from None
            if exc.status == 0 or exc.status >= 500:
                raise ConfigError(f"the openai endpoint {self.base_url} does not answer ({exc}): "
                                  "start the server, or set generator.openai.base_url or "
                                  "OPENAI_BASE_URL to where it listens") from None
            models = None  # it answers, but lists no models (some servers have no /models)
        if not self.model_name:
            self.model_name = _only_model(models, self.base_url)
        elif models is not None and not _served(self.model_name, models):
            raise ConfigError(f"model {self.model_name!r} is not served at {self.base_url} "
                              f"(it serves: {', '.join(models) or 'nothing'}): set "
                              "generator.openai.model or OPENAI_MODEL")
        self._use_served_context()
        return f"{self.model_name} at {self._url.scheme}://{self._url.netloc}{self._prefix}"

    def _models(self) -> list[str] | None:
        data = self._exchange("GET", "/models", None, {}, timeout=_PROBE_TIMEOUT_S)
        try:
            listed = [m for m in json.loads(data)["data"] if isinstance(m, dict) and "id" in m]
        except (ValueError, KeyError, TypeError):
            return None
        self._contexts = {str(m["id"]): n for m in listed
                          for n in [_tokens(m.get("max_model_len") or m.get("context_length")
                                            or m.get("max_context_length"))] if n}
        return [str(m["id"]) for m in listed]

    def _use_served_context(self) -> None:
        """The context length vLLM (``max_model_len``) and others list for the model."""
        found = self._contexts.get(self.model_name)
        if found and found >= 256:
            self._server_context = found

    # -- generation ---------------------------------------------------------------------------
    def complete(self, prompts: list[Prompt], seed: int) -> list[GenerationCall]:
        return [self.call(prompt, seed + i) for i, prompt in enumerate(prompts)]

    def call(self, prompt: Prompt, seed: int) -> GenerationCall:
        """One chat completion within the deadline; never raises for the server's behaviour."""
        record = GenerationCall(self.name, self.model_name, prompt.text, "", kind="edit")
        started = time.monotonic()
        deadline = started + self.endpoint.deadline_s
        live: dict[str, http.client.HTTPConnection] = {}
        answers: queue.Queue = queue.Queue(maxsize=1)

        def work() -> None:
            try:
                if not self.model_name:
                    try:
                        self.model_name = _only_model(self._models(), self.base_url)
                        self._use_served_context()
                    except ConfigError as exc:
                        raise _CallFailed(str(exc), False) from None
                answers.put(self._attempts(prompt, seed, deadline, live))
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
        record.model = self.model_name
        if isinstance(outcome, _CallFailed):
            record.error = str(outcome)
            return record
        usage = outcome.usage
        self._learn(prompt, usage)
        record.response = outcome.text
        record.finish_reason = outcome.finish_reason
        record.tokens_in = _tokens(usage.get("prompt_tokens")) or self.count_tokens(prompt.text)
        details = usage.get("completion_tokens_details")
        reasoning = _tokens(details.get("reasoning_tokens")) if isinstance(details, dict) else None
        if reasoning is None and outcome.reasoning:
            reasoning = self.count_tokens(outcome.reasoning)
        record.tokens_reasoning = reasoning or 0
        record.tokens_out = (_tokens(usage.get("completion_tokens"))
                             or self.count_tokens(outcome.text) + record.tokens_reasoning)
        return record

    def _body(self, prompt: Prompt, seed: int) -> dict:
        body: dict = {
            "model": self.model_name,
            "messages": prompt.messages,
            "temperature": self.config.temperature,
            self._token_param: self.answer_budget(),
            "seed": seed,
        }
        if self.endpoint.stream:
            body["stream"] = True
            if self._stream_options:
                body["stream_options"] = {"include_usage": True}
        return body

    def _attempts(self, prompt: Prompt, seed: int, deadline: float,
                  live: dict[str, http.client.HTTPConnection]) -> _Answer:
        wait, last = self.endpoint.backoff_s, "no attempt"
        for attempt in range(self.endpoint.retries + 1):
            if attempt:
                time.sleep(max(0.0, min(wait, deadline - time.monotonic())))
                wait *= 2
            if time.monotonic() >= deadline:
                break
            try:
                return self._post(prompt, seed, live)
            except _CallFailed as exc:
                last = f"attempt {attempt + 1}: {exc}"
                if not exc.retry:
                    message = str(exc) if str(exc).startswith(CONTEXT_ERROR) else last
                    raise _CallFailed(message, False) from None
        raise _CallFailed(last, False)

    def _post(self, prompt: Prompt, seed: int,
              live: dict[str, http.client.HTTPConnection]) -> _Answer:
        """One attempt; a 400 that names a parameter this client can change is retried once
        at once with the change (the other answer-length name, no ``stream_options``)."""
        for _ in range(3):
            try:
                return self._exchange("POST", "/chat/completions", self._body(prompt, seed), live,
                                      answer=True)
            except _CallFailed as exc:
                if exc.status != 400 or not self._adapt(str(exc)):
                    raise
        raise _CallFailed("the server refused every form of the request", False)

    def _adapt(self, message: str) -> bool:
        """Change the request after a 400 naming what it dislikes; False: nothing to change."""
        with self._lock:
            if (not self._param_switched and self.endpoint.token_param == "auto"
                    and any(p in message for p in _TOKEN_PARAMS)):
                other = [p for p in _TOKEN_PARAMS if p != self._token_param][0]
                self._token_param, self._param_switched = other, True
                return True
            if self._stream_options and "stream_options" in message:
                self._stream_options = False
                return True
        return False

    def _exchange(self, method: str, path: str, body: dict | None,
                  live: dict[str, http.client.HTTPConnection], *, answer: bool = False,
                  timeout: float | None = None):
        """One request under the endpoint's path; a 404 (or 405) while the path has no ``/v1``
        yet is retried once under ``/v1``, which is kept if it answers."""
        prefixes = [self._prefix] if self._prefix_known else [self._prefix, self._prefix + "/v1"]
        first: _CallFailed | None = None
        for prefix in prefixes:
            try:
                out = self._once(method, prefix + path, body, live, answer, timeout)
            except _CallFailed as exc:
                if exc.status in (404, 405) and first is None:
                    first = exc
                    continue
                if exc.status not in (0, 404, 405):
                    self._settle(prefix)
                raise
            self._settle(prefix)
            return out
        assert first is not None
        raise first

    def _settle(self, prefix: str) -> None:
        with self._lock:
            if not self._prefix_known:
                self._prefix, self._prefix_known = prefix, True

    def _once(self, method: str, path: str, body: dict | None,
              live: dict[str, http.client.HTTPConnection], answer: bool,
              timeout: float | None):
        url, ep = self._url, self.endpoint
        cls = http.client.HTTPSConnection if url.scheme == "https" else http.client.HTTPConnection
        conn = cls(self._host, url.port, timeout=min(ep.connect_timeout_s, timeout or 1e9))
        live["conn"] = conn
        headers = {"Content-Type": "application/json"}
        key = os.environ.get(ep.api_key_env, "")
        if key:
            headers["Authorization"] = f"Bearer {key}"
        try:
            conn.connect()
            conn.sock.settimeout(timeout or ep.read_timeout_s)
            conn.request(method, path, json.dumps(body) if body is not None else None, headers)
            response = conn.getresponse()
            kind = response.getheader("Content-Type", "")
            if response.status == 200 and answer and "text/event-stream" in kind:
                return _read_stream(response)
            data = response.read(_MAX_BODY + 1)
        except (OSError, http.client.HTTPException) as exc:
            raise _CallFailed(f"{type(exc).__name__}: {exc}", retry=True) from None
        finally:
            conn.close()
        if response.status != 200:
            snippet = data[:300].decode(errors="replace")
            if response.status in (400, 413) and _CONTEXT_WORDS.search(snippet):
                limit = _STATED_LIMIT.search(snippet)
                if limit and int(limit.group(1)) >= 256:
                    self._server_context = int(limit.group(1))
                raise _CallFailed(f"{CONTEXT_ERROR}HTTP {response.status}: {snippet}",
                                  retry=False, status=response.status)
            retry = response.status == 429 or response.status >= 500
            raise _CallFailed(f"HTTP {response.status}: {snippet}", retry=retry,
                              status=response.status)
        if len(data) > _MAX_BODY:
            raise _CallFailed(f"response over {_MAX_BODY} bytes", retry=False)
        return _content(data) if answer else data


def _read_stream(response: http.client.HTTPResponse) -> _Answer:
    """Accumulate a server-sent-events answer: content deltas make the text, reasoning deltas
    are kept apart (never parsed as the answer), the last chunk may carry ``usage``."""
    out, total, done = _Answer(), 0, False
    text: list[str] = []
    thought: list[str] = []
    while True:
        line = response.readline(_MAX_BODY)
        if not line:
            break
        total += len(line)
        if total > _MAX_BODY:
            raise _CallFailed(f"response over {_MAX_BODY} bytes", retry=False)
        line = line.strip()
        if not line.startswith(b"data:"):
            continue
        data = line[5:].strip()
        if data == b"[DONE]":
            done = True
            break
        try:
            chunk = json.loads(data)
            if "error" in chunk:
                raise _CallFailed(f"error in stream: {str(chunk['error'])[:300]}", retry=True)
            if isinstance(chunk.get("usage"), dict):
                out.usage = chunk["usage"]
            for choice in chunk.get("choices") or []:
                delta = choice.get("delta") or {}
                content = delta.get("content")
                if content is not None:
                    text.append(_text(content))
                for key in ("reasoning_content", "reasoning"):
                    if isinstance(delta.get(key), str):
                        thought.append(delta[key])
                if choice.get("finish_reason"):
                    out.finish_reason = str(choice["finish_reason"])
        except (ValueError, TypeError, AttributeError) as exc:
            raise _CallFailed(f"malformed stream chunk ({exc!r}): {data[:200]!r}",
                              retry=False) from None
    if not done and out.finish_reason is None:
        raise _CallFailed("the stream ended before the answer did", retry=True)
    out.text, out.reasoning = "".join(text), "".join(thought)
    return out


def _content(data: bytes) -> _Answer:
    try:
        payload = json.loads(data)
        choice = payload["choices"][0]
        message = choice["message"]
        text = _text(message.get("content"))
        reasoning = message.get("reasoning_content") or message.get("reasoning") or ""
        finish = choice.get("finish_reason")
    except (ValueError, KeyError, IndexError, TypeError, AttributeError) as exc:
        raise _CallFailed(f"malformed response ({exc!r}): {data[:200]!r}", retry=False) from None
    usage = payload.get("usage")
    return _Answer(text, reasoning if isinstance(reasoning, str) else "",
                   str(finish) if finish else None, usage if isinstance(usage, dict) else {})


def _only_model(models: list[str] | None, base_url: str) -> str:
    if not models:
        raise ConfigError(f"no model configured and {base_url} lists none at /models: set "
                          "generator.openai.model or OPENAI_MODEL")
    if len(models) > 1:
        raise ConfigError(f"no model configured and {base_url} serves several "
                          f"({', '.join(models)}): set generator.openai.model or OPENAI_MODEL")
    return models[0]


def _served(model: str, models: list[str]) -> bool:
    """Whether ``model`` is one the server lists (Ollama lists ``name:latest`` for ``name``)."""
    return model in models or f"{model}:latest" in models


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

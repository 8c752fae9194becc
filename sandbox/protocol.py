"""The JSON Lines protocol between a program in a container and the orchestrator.

One message per line, every message carries the protocol version ``v`` and a ``type`` that selects
its model. The models here are the single source of truth: the report API builds them inside the
container, the orchestrator validates every line against them on the host, and the published JSON
Schema (``sandbox/protocol.schema.json``, ``selfprog protocol schema``) is generated from them.
"""

from __future__ import annotations

import json
import math
import time
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, field_validator

from sandbox.limits import MAX_LINE_BYTES, MAX_METRICS, MAX_NAME_LEN, PROTOCOL_VERSION

Metrics = dict[str, float]


def _check_metrics(value: Metrics) -> Metrics:
    if len(value) > MAX_METRICS:
        raise ValueError(f"at most {MAX_METRICS} metrics per message, got {len(value)}")
    for name, number in value.items():
        bare = name.replace("_", "").replace(".", "")
        if not name or len(name) > MAX_NAME_LEN or not (bare.isascii() and bare.isalnum()):
            raise ValueError(f"metric name {name[:80]!r} is not a short identifier")
        if not math.isfinite(number):
            raise ValueError(f"metric {name!r} is not finite ({number})")
    return value


class _Message(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    v: Literal[1] = PROTOCOL_VERSION
    """Protocol version; a message of another version is rejected."""
    t: float = Field(default_factory=time.time)
    """Wall-clock time (seconds since the epoch) when the message was written."""


class Hello(_Message):
    """First message of a stage: who is speaking."""

    type: Literal["hello"] = "hello"
    stage: Literal["train", "eval"]
    """The stage the harness was started for."""
    program: str = Field(max_length=128)
    """The program's name from its manifest."""
    pid: int


class Progress(_Message):
    """Telemetry during training. Never used for selection."""

    type: Literal["progress"] = "progress"
    step: int = Field(ge=0)
    metrics: Metrics = Field(default_factory=dict)

    _finite = field_validator("metrics")(_check_metrics)


class Result(_Message):
    """Final metrics. Trusted only when it comes from the EVAL stage's evaluator."""

    type: Literal["result"] = "result"
    metrics: Metrics

    _finite = field_validator("metrics")(_check_metrics)


class Artifact(_Message):
    """A file the train stage exported for the evaluator, relative to ``SELFPROG_OUT``."""

    type: Literal["artifact"] = "artifact"
    path: str = Field(min_length=1, max_length=256)
    bytes: int = Field(ge=0)


class Log(_Message):
    """A line of text: the program's own output forwarded by the harness, or a note."""

    type: Literal["log"] = "log"
    stream: Literal["stdout", "stderr", "harness"] = "harness"
    text: str = Field(max_length=4096)


class Error(_Message):
    """The program or the harness reports a failure it understood."""

    type: Literal["error"] = "error"
    kind: str = Field(max_length=64)
    message: str = Field(max_length=4096)


class Exit(_Message):
    """Last message of a stage, written by the harness: how the program ended."""

    type: Literal["exit"] = "exit"
    code: int
    """The program's exit status; negative for death by signal (-9: SIGKILL)."""
    duration_s: float = Field(ge=0)
    dropped: int = Field(default=0, ge=0)
    """Lines the harness dropped (over-long, malformed, or over the flood cap)."""
    peak_memory_bytes: int | None = Field(default=None, ge=0)
    """The container's peak memory as its cgroup recorded it; None where it cannot be read."""
    oom_kills: int | None = Field(default=None, ge=0)
    """Processes the kernel's OOM killer ended in the container; None where unknown."""


Message = Annotated[
    Hello | Progress | Result | Artifact | Log | Error | Exit, Field(discriminator="type")
]
_ADAPTER: TypeAdapter[Message] = TypeAdapter(Message)


class ProtocolError(ValueError):
    """A line that is not a valid protocol message; the reason is in the text."""


def parse_line(line: str | bytes) -> Message:
    """Parse and validate one protocol line.

    Args:
        line: one line of JSON, without or with its trailing newline.

    Returns:
        The validated message.

    Raises:
        ProtocolError: the line is too long, not JSON, not an object, of an unknown type or
            version, or fails validation (non-finite metrics included).
    """
    raw = line.encode("utf-8", "replace") if isinstance(line, str) else line
    if len(raw) > MAX_LINE_BYTES:
        raise ProtocolError(f"line of {len(raw)} bytes is over the {MAX_LINE_BYTES}-byte limit")
    try:
        data = json.loads(raw, parse_constant=_reject_constant)
    except (ValueError, UnicodeDecodeError) as exc:
        raise ProtocolError(f"not JSON: {exc}") from None
    if not isinstance(data, dict):
        raise ProtocolError(f"a message is a JSON object, got {type(data).__name__}")
    try:
        return _ADAPTER.validate_python(data)
    except ValueError as exc:
        first = exc.errors()[0] if hasattr(exc, "errors") else {"msg": str(exc)}
        where = ".".join(str(p) for p in first.get("loc", ()))
        raise ProtocolError(f"invalid message at {where or 'top'}: {first['msg']}") from None


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a number JSON allows")


def dump(message: _Message) -> str:
    """One message as one line of JSON (no trailing newline)."""
    return message.model_dump_json()


def json_schema() -> dict[str, Any]:
    """The JSON Schema of every message type, generated from the models."""
    schema = _ADAPTER.json_schema()
    schema["title"] = f"selfprog protocol v{PROTOCOL_VERSION}"
    return schema

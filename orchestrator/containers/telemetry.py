"""Host-side reading of one stage's protocol stream.

Every line is re-validated with ``sandbox.protocol.parse_line``: the harness is ours, but in the
TRAIN stage the variant's code shares its container and can write anything anywhere. Lines are
capped in length, number and total bytes; a bad line is a violation (recorded, capped, never a
crash). A ``result`` from the TRAIN stage is a forgery: recorded as a violation, never a metric.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import IO

from sandbox.limits import MAX_LINE_BYTES, MAX_LOG_LINES, MAX_MESSAGES, MAX_STAGE_OUTPUT_BYTES
from sandbox.protocol import (
    Artifact,
    Error,
    Exit,
    Hello,
    Log,
    Message,
    Progress,
    ProtocolError,
    Result,
    parse_line,
)

MAX_VIOLATIONS = 20
"""Violations kept word for word per stage; the rest are only counted."""
MAX_FILE_BYTES = 2 * 1024 * 1024
"""Most bytes (UTF-8, counted as bytes) written to a stage's log and to its share of
``events.jsonl``; a short marker line follows the cut."""
MAX_TELEMETRY_KEYS = 64
"""Distinct progress metric names kept per stage; later new names are dropped (one violation)."""
_SLACK = 64 * 1024
FORGED = "forged result: the train stage sent a result, which is never trusted"


class _CappedWriter:
    """Writes text to a UTF-8 file until ``limit`` BYTES are written (not characters: one
    character may take four bytes), then one marker line, then nothing."""

    MARKER = "\n[selfprog: capped here]\n"

    def __init__(self, handle: IO[str], limit: int):
        self.handle, self.left, self.cut = handle, limit, False

    def write(self, text: str) -> None:
        if self.cut:
            return
        data = text.encode("utf-8", "replace")  # as ``open_log`` will write it
        if len(data) > self.left:
            head = data[: max(self.left, 0)].decode("utf-8", "ignore")  # never half a character
            self.handle.write(head + self.MARKER)
            self.left, self.cut = 0, True
            return
        self.handle.write(text)
        self.left -= len(data)


class StageStream:
    """Feed it the bytes of a stage's stdout; it keeps what can be trusted, and says why not."""

    def __init__(self, stage: str, log: IO[str], events: IO[str]):
        self.stage = stage
        self.log = _CappedWriter(log, MAX_FILE_BYTES)
        self.events = _CappedWriter(events, MAX_FILE_BYTES)
        self.buffer = b""
        self.overlong = False
        self.total = 0
        self.messages = 0
        self.violation_count = 0
        self.violations: list[str] = []
        self.hello: Hello | None = None
        self.exit: Exit | None = None
        self.result: Result | None = None
        self.artifacts: list[Artifact] = []
        self.error: str | None = None
        """The last ``error`` message the program sent (its own words for a failure)."""
        self.telemetry: dict[str, float] = {}
        self.dropped_keys = 0
        """Progress metrics not kept because their names came past ``MAX_TELEMETRY_KEYS``."""
        self.over_cap = False

    @property
    def done(self) -> bool:
        return self.exit is not None or self.over_cap

    def feed(self, chunk: bytes) -> bool:
        """Take the next bytes; True once the stage said ``exit`` or went over its output cap."""
        self.total += len(chunk)
        if self.total > MAX_STAGE_OUTPUT_BYTES + _SLACK:
            self.violate(f"output over the {MAX_STAGE_OUTPUT_BYTES}-byte cap; stopped reading")
            self.over_cap = True
            return True
        self.buffer += chunk
        while not self.done:
            cut = self.buffer.find(b"\n")
            if cut < 0:
                break
            line, self.buffer = self.buffer[:cut], self.buffer[cut + 1:]
            if self.overlong:
                self.overlong = False
                continue
            self.line(line)
        if len(self.buffer) > MAX_LINE_BYTES:
            self.violate(f"line over {MAX_LINE_BYTES} bytes dropped")
            self.buffer, self.overlong = b"", True
        return self.done

    def close(self) -> None:
        """The stream ended: a last line without newline still counts."""
        if self.buffer and not self.overlong and not self.done:
            self.line(self.buffer)
        self.buffer = b""

    def line(self, raw: bytes) -> None:
        if not raw.strip():
            return
        try:
            message = parse_line(raw)
        except ProtocolError as exc:
            self.violate(f"bad line: {exc}")
            return
        self.messages += 1
        if self.messages > MAX_MESSAGES + MAX_LOG_LINES + 8:
            if self.messages == MAX_MESSAGES + MAX_LOG_LINES + 9:
                self.violate("message flood: later messages ignored")
            return
        self.accept(message)

    def accept(self, message: Message) -> None:
        if isinstance(message, Log):
            self.log.write(f"[{message.stream}] {message.text}\n")
            return
        self.events.write(json.dumps({"stage": self.stage, **message.model_dump()}) + "\n")
        if isinstance(message, Hello):
            if self.hello is None and message.stage == self.stage:
                self.hello = message
            else:
                self.violate("unexpected hello")
        elif isinstance(message, Exit):
            self.exit = message
        elif isinstance(message, Result):
            if self.stage == "train":
                self.violate(FORGED)
            else:
                self.result = message
        elif isinstance(message, Progress):
            self.progress(message.metrics)
            self.telemetry["step"] = float(message.step)
            self.telemetry["progress_messages"] = self.telemetry.get("progress_messages", 0) + 1
        elif isinstance(message, Artifact) and len(self.artifacts) < 1000:
            self.artifacts.append(message)
        elif isinstance(message, Error):
            self.error = f"{message.kind}: {message.message}"[:1000]

    def progress(self, metrics: dict[str, float]) -> None:
        """Keep the latest values, but never more than ``MAX_TELEMETRY_KEYS`` distinct names."""
        limit = MAX_TELEMETRY_KEYS - (0 if "step" in self.telemetry else 2)  # and progress_messages
        for name, value in metrics.items():
            if name in self.telemetry or len(self.telemetry) < limit:
                self.telemetry[name] = value
                continue
            if not self.dropped_keys:
                self.violate(f"over {MAX_TELEMETRY_KEYS} distinct progress metrics: "
                             "later new names dropped")
            self.dropped_keys += 1

    def violate(self, text: str) -> None:
        self.violation_count += 1
        if len(self.violations) < MAX_VIOLATIONS:
            self.violations.append(text[:300])
        elif len(self.violations) == MAX_VIOLATIONS:
            self.violations.append("(more violations, not kept)")


def open_log(path: Path) -> IO[str]:
    return path.open("w", encoding="utf-8", errors="replace")

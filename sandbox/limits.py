"""The protocol's caps, in one place both sides import.

Kept free of pydantic so the harness starts fast inside every container (it only needs these
numbers); ``sandbox.protocol`` re-exports them.
"""

from __future__ import annotations

from typing import Final

PROTOCOL_VERSION: Final = 1
MAX_LINE_BYTES = 64 * 1024
"""A line longer than this is not parsed: it is recorded as a violation and dropped."""
MAX_METRICS = 64
"""At most this many metrics in one message."""
MAX_NAME_LEN = 64
"""Longest metric name."""
MAX_TEXT = 4096
"""Longest text of a ``log`` or ``error`` message; the harness cuts longer output lines."""
MAX_MESSAGES = 10_000
"""Protocol messages one stage may send; the rest are dropped and counted."""
MAX_LOG_LINES = 5_000
"""Lines of a program's own stdout and stderr forwarded as ``log`` messages per stage."""
MAX_STAGE_OUTPUT_BYTES = 16 * 1024 * 1024
"""Bytes of protocol stream one stage may produce; the host stops reading beyond it."""
PROGRAM_MESSAGE_TYPES = frozenset({"progress", "result", "artifact", "log", "error"})
"""Types a program may send; ``hello`` and ``exit`` belong to the harness alone."""

"""The wire format between the trusted evaluator and a model server: plain data, never code.

One message is a dict whose values are JSON values or numpy arrays. On the wire::

    b"SPX1" | header length (4 bytes, big-endian) | header (UTF-8 JSON) | array bytes, in order

The header is ``{"values": {name: JSON}, "arrays": [{"name", "dtype", "shape"}, ...]}``. Arrays
travel as raw little-endian bytes of a few plain dtypes, in C order; the reader checks every
name, dtype and shape, and caps the header and the arrays' total size before it reads them. No
pickle, no object arrays: decoding a message can build nothing but JSON values and arrays.

Only the standard library and numpy are used here.
"""

from __future__ import annotations

import json
import math
import struct
from collections.abc import Callable
from typing import Any

import numpy as np

MAGIC = b"SPX1"
MAX_HEADER_BYTES = 1024 * 1024
"""Longest header; a longer one is refused before it is read."""
MAX_ARRAY_BYTES = 256 * 1024 * 1024
"""Default cap on the arrays of one message, all together."""
MAX_ARRAYS = 64
MAX_DIMS = 8
DTYPES = frozenset({"bool", "uint8", "int8", "int16", "int32", "int64", "float16", "float32",
                    "float64"})
"""The only dtypes that travel (as little-endian bytes)."""
Message = dict[str, Any]
Read = Callable[[int], bytes]


class CodecError(ValueError):
    """A message that cannot be encoded or decoded; the reason is in the text."""


def encode(message: Message) -> bytes:
    """One message as bytes.

    Raises:
        CodecError: a name is not a short string, a value is neither JSON nor an array of an
            allowed dtype, or a number is not finite.
    """
    if not isinstance(message, dict):
        raise CodecError(f"a message is a dict, got {type(message).__name__}")
    values: dict[str, Any] = {}
    specs, blobs = [], []
    for name, value in message.items():
        _check_name(name)
        if isinstance(value, np.ndarray):
            dtype = value.dtype.name
            if dtype not in DTYPES or value.ndim > MAX_DIMS:
                raise CodecError(f"array {name!r}: dtype {dtype} with {value.ndim} dims "
                                 f"cannot travel (allowed: {sorted(DTYPES)})")
            specs.append({"name": name, "dtype": dtype, "shape": list(value.shape)})
            blobs.append(np.ascontiguousarray(value, dtype=value.dtype.newbyteorder("<"))
                         .tobytes())
        else:
            values[name] = value
    if len(specs) > MAX_ARRAYS:
        raise CodecError(f"{len(specs)} arrays in one message; at most {MAX_ARRAYS}")
    try:
        header = json.dumps({"values": values, "arrays": specs}, allow_nan=False).encode()
    except (TypeError, ValueError) as exc:
        raise CodecError(f"a value is not plain JSON: {exc}") from None
    if len(header) > MAX_HEADER_BYTES:
        raise CodecError(f"header of {len(header)} bytes; at most {MAX_HEADER_BYTES}")
    return b"".join([MAGIC, struct.pack(">I", len(header)), header, *blobs])


def decode(data: bytes, max_bytes: int = MAX_ARRAY_BYTES) -> Message:
    """A message from bytes that must hold exactly one message.

    Raises:
        CodecError: see :func:`read`; also bytes left over after the message.
    """
    view, pos = memoryview(data), 0

    def take(n: int) -> bytes:
        nonlocal pos
        chunk = bytes(view[pos:pos + n])
        pos += len(chunk)
        return chunk

    message = read(take, max_bytes)
    if pos != len(data):
        raise CodecError(f"{len(data) - pos} bytes after the message")
    return message


def read(take: Read, max_bytes: int = MAX_ARRAY_BYTES) -> Message:
    """Read one message with ``take(n)`` (which returns up to ``n`` bytes, b"" at the end).

    Raises:
        CodecError: a wrong magic, a header that is too long, not JSON or malformed, an unknown
            dtype, a bad shape, arrays over ``max_bytes`` together, or a message cut short.
    """
    start = _exactly(take, 8, "the frame start")
    if start[:4] != MAGIC:
        raise CodecError(f"not a message: it starts with {start[:4]!r}, not {MAGIC!r}")
    (length,) = struct.unpack(">I", start[4:])
    if length > MAX_HEADER_BYTES:
        raise CodecError(f"header of {length} bytes; at most {MAX_HEADER_BYTES}")
    try:
        header = json.loads(_exactly(take, length, "the header"), parse_constant=_no_constant)
    except (ValueError, UnicodeDecodeError) as exc:
        raise CodecError(f"header is not JSON: {exc}") from None
    values, specs = _parse_header(header)
    sizes = [_size(spec) for spec in specs]
    if sum(sizes) > max_bytes:
        raise CodecError(f"arrays of {sum(sizes)} bytes together; at most {max_bytes}")
    message: Message = dict(values)
    for spec, size in zip(specs, sizes, strict=True):
        raw = _exactly(take, size, f"array {spec['name']!r}")
        dtype = np.dtype(spec["dtype"]).newbyteorder("<")
        array = np.frombuffer(raw, dtype=dtype).reshape(spec["shape"])
        message[spec["name"]] = array.astype(array.dtype.newbyteorder("="), copy=True)
    return message


def _parse_header(header: Any) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    if not isinstance(header, dict) or set(header) != {"values", "arrays"}:
        raise CodecError("header must be an object with exactly 'values' and 'arrays'")
    values, specs = header["values"], header["arrays"]
    if not isinstance(values, dict) or not isinstance(specs, list):
        raise CodecError("header: 'values' must be an object and 'arrays' a list")
    if len(specs) > MAX_ARRAYS:
        raise CodecError(f"{len(specs)} arrays in one message; at most {MAX_ARRAYS}")
    seen = set(values)
    for name in values:
        _check_name(name)
    for spec in specs:
        if not isinstance(spec, dict) or set(spec) != {"name", "dtype", "shape"}:
            raise CodecError("header: each array needs exactly 'name', 'dtype' and 'shape'")
        _check_name(spec["name"])
        if spec["name"] in seen:
            raise CodecError(f"header: {spec['name']!r} appears twice")
        seen.add(spec["name"])
        if spec["dtype"] not in DTYPES:
            raise CodecError(f"array {spec['name']!r}: dtype {str(spec['dtype'])[:40]!r} is not "
                             f"one of {sorted(DTYPES)}")
        shape = spec["shape"]
        if not isinstance(shape, list) or len(shape) > MAX_DIMS or not all(
                isinstance(n, int) and not isinstance(n, bool) and 0 <= n < 2**40 for n in shape):
            raise CodecError(f"array {spec['name']!r}: shape must be at most {MAX_DIMS} "
                             "non-negative integers")
    return values, specs


def _size(spec: dict[str, Any]) -> int:
    return math.prod(spec["shape"]) * np.dtype(spec["dtype"]).itemsize


def _check_name(name: Any) -> None:
    if not isinstance(name, str) or not 0 < len(name) <= 64:
        raise CodecError(f"a name is a string of 1 to 64 characters, got {str(name)[:80]!r}")


def _exactly(take: Read, n: int, what: str) -> bytes:
    parts, got = [], 0
    while got < n:
        chunk = take(n - got)
        if not chunk:
            raise CodecError(f"the message ended inside {what} ({got} of {n} bytes)")
        parts.append(chunk)
        got += len(chunk)
    return b"".join(parts)


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a number JSON allows")

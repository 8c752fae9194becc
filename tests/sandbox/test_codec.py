"""The split evaluation's wire format: plain values and arrays round-trip; anything else is refused
with a reason before it is read or built."""

from __future__ import annotations

import json
import struct

import numpy as np
import pytest

from sandbox import codec


def frame(header: object, body: bytes = b"") -> bytes:
    raw = json.dumps(header).encode()
    return codec.MAGIC + struct.pack(">I", len(raw)) + raw + body


def test_values_and_arrays_of_every_allowed_dtype_round_trip():
    message = {"n": 3, "flag": True, "text": "é", "nested": {"a": [1, 2.5, None]}}
    for dtype in sorted(codec.DTYPES):
        message[f"a_{dtype}"] = (np.arange(12) % 2).astype(dtype).reshape(3, 4)
    message["empty"] = np.zeros((0, 7), dtype=np.float32)
    back = codec.decode(codec.encode(message))
    assert set(back) == set(message)
    for name, value in message.items():
        if isinstance(value, np.ndarray):
            assert back[name].dtype == value.dtype and back[name].shape == value.shape
            assert np.array_equal(back[name], value)
            assert back[name].flags.writeable  # a copy, not a view of the wire bytes
        else:
            assert back[name] == value


def test_a_big_endian_or_strided_array_travels_as_its_values():
    big = np.arange(6, dtype=">i4").reshape(2, 3)
    strided = np.arange(20, dtype=np.float64)[::3]
    back = codec.decode(codec.encode({"big": big, "strided": strided}))
    assert back["big"].tolist() == big.tolist() and back["strided"].tolist() == strided.tolist()


@pytest.mark.parametrize("value, reason", [
    (np.array([object()]), "cannot travel"),
    (np.array(["text"]), "cannot travel"),
    (np.zeros(2, dtype=np.complex64), "cannot travel"),
    (float("nan"), "not plain JSON"),
    (object(), "not plain JSON"),
])
def test_what_is_not_plain_data_is_refused_when_sent(value, reason):
    with pytest.raises(codec.CodecError, match=reason):
        codec.encode({"x": value})


@pytest.mark.parametrize("data, reason", [
    (b"", "ended inside the frame start"),
    (b"\x80\x04\x95pickle!", "not a message"),
    (codec.MAGIC + struct.pack(">I", codec.MAX_HEADER_BYTES + 1), "header of"),
    (codec.MAGIC + struct.pack(">I", 10) + b"{", "ended inside the header"),
    (frame("just a string"), "exactly 'values' and 'arrays'"),
    (frame({"values": {}, "arrays": {}}), "'arrays' a list"),
    (frame({"values": {}, "arrays": [{"name": "x", "dtype": "object", "shape": [1]}]}),
     "dtype 'object'"),
    (frame({"values": {}, "arrays": [{"name": "x", "dtype": "float32", "shape": [-1]}]}),
     "non-negative integers"),
    (frame({"values": {}, "arrays": [{"name": "x", "dtype": "float32", "shape": [1.5]}]}),
     "non-negative integers"),
    (frame({"values": {}, "arrays": [{"name": "x", "dtype": "int8", "shape": [4]}]}, b"ab"),
     "ended inside array 'x'"),
    (frame({"values": {"x": 1}, "arrays": [{"name": "x", "dtype": "int8", "shape": [0]}]}),
     "appears twice"),
    (frame({"values": {"": 1}, "arrays": []}), "a name is a string"),
    (frame({"values": {}, "arrays": [{"name": "x", "dtype": "int8", "shape": [1],
                                      "pickle": True}]}), "exactly 'name'"),
    (frame({"values": {}, "arrays": []}, b"extra"), "bytes after the message"),
    (codec.MAGIC + struct.pack(">I", 20) + b'{"values": NaN, "a":', "not JSON"),
])
def test_malformed_messages_are_refused_with_a_reason(data, reason):
    with pytest.raises(codec.CodecError, match=reason):
        codec.decode(data)


def test_oversized_arrays_are_refused_before_their_bytes_are_read():
    header = {"values": {}, "arrays": [{"name": "x", "dtype": "float64", "shape": [2**20, 2**10]}]}
    taken: list[int] = []
    data = frame(header)

    def take(n: int) -> bytes:
        taken.append(n)
        return data[sum(taken[:-1]):sum(taken)]

    with pytest.raises(codec.CodecError, match="at most 1000"):
        codec.read(take, max_bytes=1000)
    assert sum(taken) == len(data)  # the frame start and header only: no array byte asked for
    ok = codec.encode({"x": np.zeros(125)})  # exactly 1000 bytes passes
    assert codec.decode(ok, max_bytes=1000)["x"].shape == (125,)
    with pytest.raises(codec.CodecError, match="at most 999"):
        codec.decode(ok, max_bytes=999)


def test_too_many_arrays_are_refused_both_ways():
    many = {f"a{i}": np.zeros(1) for i in range(codec.MAX_ARRAYS + 1)}
    with pytest.raises(codec.CodecError, match="at most"):
        codec.encode(many)
    specs = [{"name": f"a{i}", "dtype": "int8", "shape": [0]} for i in range(codec.MAX_ARRAYS + 1)]
    with pytest.raises(codec.CodecError, match="at most"):
        codec.decode(frame({"values": {}, "arrays": specs}))

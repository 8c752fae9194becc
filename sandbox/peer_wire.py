"""Plain data across the split boundary of a peer program (OpenEvolve, ShinkaEvolve).

A peer evaluator calls functions of the variant's program; in split isolation the program runs in
its own container, so arguments and results travel as :mod:`sandbox.codec` messages. Only plain
data crosses: ``None``, bools, ints, floats (non-finite ones too), strings, lists, tuples, dicts
and numpy arrays of the codec's dtypes. A subclass arrives as its plain base (a ``float`` subclass
as a ``float``, an ``ndarray`` subclass as an ``ndarray``, a named tuple as a tuple): no method of
the sender's classes ever runs on the receiving side. Anything else (objects, callables, object
arrays, bytes) is refused with :class:`WireError`. Never pickle.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from sandbox import codec

MAX_DEPTH = 32
MAX_ITEMS = 200_000
_FLOATS = {"nan": math.nan, "inf": math.inf, "-inf": -math.inf}


class WireError(TypeError):
    """A value that cannot cross the boundary as plain data."""


def pack(value: Any, message: codec.Message | None = None) -> codec.Message:
    """``value`` as a codec message ``{"value": tree, "a0": array, ...}``."""
    message = {} if message is None else message
    counter = [0]
    message["value"] = _to_tree(value, message, counter, 0)
    return message


def unpack(message: codec.Message) -> Any:
    """The value a :func:`pack` message holds (arrays as plain ``ndarray``)."""
    return _from_tree(message.get("value"), message, 0)


def _to_tree(value: Any, arrays: codec.Message, counter: list[int], depth: int) -> Any:
    counter[0] += 1
    if depth > MAX_DEPTH or counter[0] > MAX_ITEMS:
        raise WireError("the value is nested too deep or holds too many items")
    if value is None or type(value) is bool or isinstance(value, np.bool_):
        return None if value is None else bool(value)
    if isinstance(value, (int, np.integer)) and not isinstance(value, bool):
        return int(value)
    if isinstance(value, (float, np.floating)):
        number = float(value)
        if math.isfinite(number):
            return number
        return {"__float__": "nan" if math.isnan(number) else ("inf" if number > 0 else "-inf")}
    if isinstance(value, str):
        return {"__str__": str.__str__(value)} if value.startswith("__") else str.__str__(value)
    if isinstance(value, np.ndarray):
        plain = np.array(value, copy=True, subok=False)
        if plain.dtype.name not in codec.DTYPES:
            raise WireError(f"an array of dtype {plain.dtype} cannot cross the boundary")
        name = f"a{len(arrays)}"
        arrays[name] = plain
        return {"__array__": name}
    if isinstance(value, (list, tuple)):
        items = [_to_tree(item, arrays, counter, depth + 1) for item in list.__iter__(list(value))]
        return {"__tuple__": items} if isinstance(value, tuple) else items
    if isinstance(value, dict):
        pairs = []
        for key, item in dict.items(value):
            if not isinstance(key, (str, int)) or isinstance(key, bool):
                raise WireError(f"a dict key of type {type(key).__name__} cannot cross")
            key = str.__str__(key) if isinstance(key, str) else int(key)
            pairs.append([key, _to_tree(item, arrays, counter, depth + 1)])
        return {"__dict__": pairs}
    raise WireError(f"a {type(value).__name__} cannot cross the split boundary: only plain data "
                    "(numbers, strings, lists, tuples, dicts, numpy arrays) travels")


def _from_tree(tree: Any, arrays: codec.Message, depth: int) -> Any:
    if depth > MAX_DEPTH:
        raise WireError("the value is nested too deep")
    if tree is None or isinstance(tree, (bool, int, float, str)):
        return tree
    if isinstance(tree, list):
        return [_from_tree(item, arrays, depth + 1) for item in tree]
    if isinstance(tree, dict) and len(tree) == 1:
        (kind, body), = tree.items()
        if kind == "__float__" and body in _FLOATS:
            return _FLOATS[body]
        if kind == "__str__" and isinstance(body, str):
            return body
        if kind == "__array__" and isinstance(body, str):
            array = arrays.get(body)
            if not isinstance(array, np.ndarray):
                raise WireError(f"the message names a missing array {body!r}")
            return array
        if kind == "__tuple__" and isinstance(body, list):
            return tuple(_from_tree(item, arrays, depth + 1) for item in body)
        if kind == "__dict__" and isinstance(body, list):
            out = {}
            for pair in body:
                if not (isinstance(pair, list) and len(pair) == 2
                        and isinstance(pair[0], (str, int))):
                    raise WireError("a malformed dict entry")
                out[pair[0]] = _from_tree(pair[1], arrays, depth + 1)
            return out
    raise WireError(f"a malformed value: {str(tree)[:80]}")

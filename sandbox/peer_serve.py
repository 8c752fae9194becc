"""The program server of a peer program in split isolation (``python -m sandbox.serve`` runs it).

The variant's program (the TRAIN stage copied its source to ``$SELFPROG_OUT/program.py``) is loaded
only here, in a fresh Landlock-restricted worker per call (:func:`sandbox.remote.serve`). Requests
come from the evaluator's stub module (:mod:`sandbox.peer_stub`) as plain data:

* ``{"op": "names"}`` -> the module's public callables and its plain-data constants;
* ``{"op": "call", "name": NAME, "value": (args, kwargs)}`` -> ``NAME(*args, **kwargs)``.

The answer is plain data only (:mod:`sandbox.peer_wire`): a result the wire cannot carry (an
object, a callable, a pickle payload hidden in a subclass) is the program's failure.
"""

from __future__ import annotations

import importlib.util
import os
import sys
from pathlib import Path
from typing import Any

import numpy  # noqa: F401  (imported once in the supervisor; every worker forks with it)

from sandbox import codec, peer_wire, remote

PROGRAM = "program.py"


def _load_module() -> Any:
    path = Path(os.environ.get("SELFPROG_OUT", "/out")) / PROGRAM
    if os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())  # the program's own sibling modules, as shipped
    spec = importlib.util.spec_from_file_location("program", path)
    if spec is None or spec.loader is None:
        raise ImportError(f"cannot load {path}")
    module = importlib.util.module_from_spec(spec)
    sys.modules["program"] = module
    spec.loader.exec_module(module)
    return module


def names(module: Any) -> dict[str, Any]:
    functions, values = [], {}
    for name, value in vars(module).items():
        if name.startswith("__"):
            continue
        if callable(value) and not isinstance(value, type(sys)):
            functions.append(name)
            continue
        try:
            peer_wire.pack(value)
        except peer_wire.WireError:
            continue
        values[name] = value
    return {"functions": sorted(functions), "values": values}


def load() -> remote.Predict:
    module = _load_module()

    def predict(request: codec.Message) -> codec.Message:
        op = request.get("op")
        if op == "names":
            return peer_wire.pack(names(module))
        if op != "call" or not isinstance(request.get("name"), str):
            raise ValueError(f"unknown request {str(op)[:40]!r}")
        args, kwargs = peer_wire.unpack(request)
        function = getattr(module, request["name"])
        if not callable(function):
            raise TypeError(f"{request['name']!r} is not callable")
        return peer_wire.pack(function(*args, **kwargs))

    return predict


if __name__ == "__main__":
    remote.serve(load)

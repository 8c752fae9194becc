"""The evaluator's side of split isolation: a stub module placed at the program path.

A peer evaluator loads "the program" from the path it is given; in split isolation that path holds
a two-line stub that calls :func:`install`. The stub asks the program server which functions and
constants the variant's module has, and defines each function as a forwarder: arguments go out as
plain data, the result comes back as plain data (:mod:`sandbox.peer_wire`). The variant's code
never runs in the evaluator's process, so it cannot patch the evaluator's modules, hide a pickle
payload in a result, or register an exit hook there.
"""

from __future__ import annotations

from typing import Any

from sandbox import peer_wire, remote

SOURCE = ("# selfprog split isolation: the variant's program runs in its own container;\n"
          "# this stub forwards calls to it as plain data.\n"
          "from sandbox import peer_stub as _selfprog_stub\n"
          "_selfprog_stub.install(globals())\n")


class SplitError(RuntimeError):
    """A call that cannot cross the split boundary, or that the program server failed."""


def _ask(request: dict[str, Any]) -> Any:
    try:
        return peer_wire.unpack(remote.remote_model()(**request))
    except remote.RemoteError as exc:
        raise SplitError(f"the program failed: {exc}") from None
    except peer_wire.WireError as exc:
        raise SplitError(f"the program's answer is not plain data: {exc}") from None


def call(name: str, *args: Any, **kwargs: Any) -> Any:
    """``name(*args, **kwargs)`` in the variant's program server."""
    try:
        message = peer_wire.pack((list(args), kwargs), {"op": "call", "name": name})
    except peer_wire.WireError as exc:
        raise SplitError(f"cannot pass this into the program in split isolation: {exc}") from None
    return _ask(message)


def _forwarder(name: str) -> Any:
    def forward(*args: Any, **kwargs: Any) -> Any:
        return call(name, *args, **kwargs)

    forward.__name__ = forward.__qualname__ = name
    return forward


def install(namespace: dict[str, Any]) -> None:
    listing = _ask({"op": "names"})
    for name in listing.get("functions", []):
        namespace[name] = _forwarder(name)
    for name, value in listing.get("values", {}).items():
        namespace.setdefault(name, value)

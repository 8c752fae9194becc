"""Split evaluation: the variant's model answers from its own container; the evaluator scores.

A variant's exported model is code (TorchScript can read files, keep state, look at its input in
any order). So the trusted evaluator never loads it. It runs in a second, hardened container as a
*model server* that has no held-out data, no protocol pipe, no network and nothing writable that
outlives a request; the two meet on one unix socket (``SELFPROG_SOCKET``, ``/sock/model.sock``).

Model side (a program's ``serve.py``, run by ``python -m sandbox.serve``)::

    remote.serve(load)      # load() -> predict(request: dict) -> dict

``serve`` is the trusted supervisor: it listens, reads each request (capped, checked), then forks
a fresh worker that restricts itself with Landlock (read: the Python install, the program,
``/out``; write: nothing), calls ``load()`` (this runs the model's own code), answers, and exits.
The supervisor bounds the worker's time and answer, kills every process the request left, and
wipes ``/tmp`` and ``/dev/shm``: nothing one request does can be seen by the next.

Evaluator side::

    model = remote.remote_model()
    answer = model(x=inputs)          # dict of JSON values and numpy arrays; RemoteError on failure

Messages are :mod:`sandbox.codec` frames: JSON values and plain arrays, never pickle.
"""

from __future__ import annotations

import contextlib
import os
import select
import shutil
import signal
import socket
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from sandbox import codec, landlock

SOCKET = "/sock/model.sock"
"""Where the server listens unless ``SELFPROG_SOCKET`` says otherwise."""
REQUEST_S = 120.0
"""Longest one request may take (load, answer) unless ``SELFPROG_SERVE_REQUEST_S`` says."""
CONNECT_S = 30.0
"""How long the evaluator waits for the server to start listening (it starts beside EVAL)."""
WIPE = ("/tmp", "/dev/shm")
"""Emptied after every request: the only writable places a model server has."""
Predict = Callable[[codec.Message], codec.Message]


class RemoteError(RuntimeError):
    """The model server died, hung, refused, or answered malformed or oversized data."""


# -- evaluator side -------------------------------------------------------------------------------


class RemoteModel:
    """Calls the model server: each call is one request on a fresh connection (a fresh worker).

    Args:
        path: the socket; defaults to ``SELFPROG_SOCKET`` or ``/sock/model.sock``.
        timeout_s: longest one call may take, from connecting to the last byte of the answer.
        connect_s: how long the first call waits for the server to start listening.
        max_bytes: cap on the arrays of one answer.
    """

    def __init__(self, path: str | None = None, *, timeout_s: float | None = None,
                 connect_s: float = CONNECT_S, max_bytes: int = codec.MAX_ARRAY_BYTES):
        self.path = path or os.environ.get("SELFPROG_SOCKET", SOCKET)
        self.timeout_s = timeout_s or float(os.environ.get("SELFPROG_SERVE_REQUEST_S", REQUEST_S))
        self.connect_s = connect_s
        self.max_bytes = max_bytes
        self.calls = 0

    def __call__(self, **request: Any) -> codec.Message:
        """Send ``request`` (JSON values and arrays); return the answer.

        Raises:
            RemoteError: no server, a server that closes, hangs past ``timeout_s``, reports a
                failure, or answers a malformed or oversized message.
        """
        try:
            data = codec.encode(request)
        except codec.CodecError as exc:
            raise RemoteError(f"the request cannot be sent: {exc}") from None
        deadline = time.monotonic() + self.timeout_s
        with self._connect() as conn:
            try:
                conn.settimeout(max(0.01, deadline - time.monotonic()))
                conn.sendall(data)
                conn.shutdown(socket.SHUT_WR)
                answer = codec.read(_Reader(conn, deadline), self.max_bytes)
            except TimeoutError:
                raise RemoteError(f"the model server did not answer within {self.timeout_s:g} s"
                                  ) from None
            except OSError as exc:
                raise RemoteError(f"the model server's connection failed: {exc}") from None
            except codec.CodecError as exc:
                raise RemoteError(f"the model server's answer is malformed: {exc}") from None
        self.calls += 1
        if "error" in answer:
            raise RemoteError(f"the model failed: {str(answer['error'])[:2000]}")
        return answer

    def _connect(self) -> socket.socket:
        waited_until = time.monotonic() + (self.connect_s if self.calls == 0 else 2.0)
        while True:
            conn = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            try:
                conn.connect(self.path)
                return conn
            except (FileNotFoundError, ConnectionRefusedError) as exc:
                conn.close()
                if time.monotonic() > waited_until:
                    raise RemoteError(f"no model server at {self.path}: {exc}") from None
                time.sleep(0.05)
            except OSError as exc:
                conn.close()
                raise RemoteError(f"cannot reach the model server at {self.path}: {exc}"
                                  ) from None


class _Reader:
    """``take(n)`` over a socket with an overall deadline."""

    def __init__(self, conn: socket.socket, deadline: float):
        self.conn, self.deadline = conn, deadline

    def __call__(self, n: int) -> bytes:
        left = self.deadline - time.monotonic()
        if left <= 0:
            raise TimeoutError
        self.conn.settimeout(left)
        return self.conn.recv(min(n, 1 << 20))


def remote_model(path: str | None = None, **kwargs: Any) -> RemoteModel:
    """The model server as a callable (see :class:`RemoteModel`)."""
    return RemoteModel(path, **kwargs)


# -- model side -----------------------------------------------------------------------------------


def read_paths() -> list[str]:
    """What a worker may read: the Python install and libraries, the program, the artifacts."""
    out = os.environ.get("SELFPROG_OUT", "/out")
    here = str(Path(__file__).resolve().parent)
    return sorted({sys.prefix, sys.base_prefix, sys.exec_prefix, here, os.getcwd(), out, "/usr",
                   "/lib", "/lib64", "/etc/ld.so.cache", "/dev/null", "/dev/urandom",
                   "/proc/self", "/proc/cpuinfo", "/sys/devices/system/cpu", "/sys/fs/cgroup"})


def serve(load: Callable[[], Predict], path: str | None = None, *,
          request_s: float | None = None, max_bytes: int = codec.MAX_ARRAY_BYTES,
          requests: int | None = None, wipe: tuple[str, ...] | None = None,
          sweep: bool | None = None) -> None:
    """Answer requests on a unix socket until killed (or after ``requests`` of them).

    Args:
        load: called in each fresh, restricted worker; returns the function that answers one
            request (a dict of JSON values and arrays) with another such dict.
        path: the socket; defaults to ``SELFPROG_SOCKET`` or ``/sock/model.sock``.
        request_s: longest one worker may live.
        max_bytes: cap on the arrays of one request and of one answer.
        requests: stop after this many (tests); None serves forever.
        wipe: folders emptied after every request; None means ``WIPE`` inside the server's own
            container and nothing elsewhere (never a host's ``/tmp``).
        sweep: after every request, SIGKILL every process but init and this one, not only the
            worker's group. None means: only inside the server's own container.

    The server's own container is recognised by ``SELFPROG_SERVE_SWEEP=1``, which
    ``python -m sandbox.serve`` sets only when started as the ``serve`` stage under an init.
    """
    contained = os.environ.get("SELFPROG_SERVE_SWEEP") == "1"
    sweep = contained if sweep is None else sweep
    wipe = (WIPE if contained else ()) if wipe is None else wipe
    where = path or os.environ.get("SELFPROG_SOCKET", SOCKET)
    limit = request_s or float(os.environ.get("SELFPROG_SERVE_REQUEST_S", REQUEST_S))
    with _socket_file(where):
        listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        listener.bind(where)
        listener.listen(4)
        _note(f"listening on {where}; Landlock ABI {landlock.abi_version() or 'absent'}")
        served = 0
        while requests is None or served < requests:
            conn, _ = listener.accept()
            try:
                _handle(conn, listener, load, limit, max_bytes, sweep)
            finally:
                conn.close()
                left = _clean(wipe)
            served += 1
            if left:  # fail closed: state that outlives a request could reach the next one
                _note(f"could not wipe {left[:3]}: serving no more requests")
                break
        listener.close()


@contextlib.contextmanager
def _socket_file(path: str) -> Iterator[None]:
    """Remove a stale socket file before binding, and the socket file after serving."""
    with contextlib.suppress(FileNotFoundError):
        os.unlink(path)
    try:
        yield
    finally:
        with contextlib.suppress(OSError):
            os.unlink(path)


def _handle(conn: socket.socket, listener: socket.socket, load: Callable[[], Predict],
            limit: float, max_bytes: int, sweep: bool) -> None:
    deadline = time.monotonic() + limit
    try:
        request = codec.read(_Reader(conn, deadline), max_bytes)
    except (OSError, codec.CodecError) as exc:
        _answer(conn, {"error": f"bad request: {exc}"})
        return
    answer = _in_worker(load, request, listener, conn, deadline, max_bytes, sweep)
    _answer(conn, answer)


def _answer(conn: socket.socket, message: codec.Message) -> None:
    try:
        conn.settimeout(30)
        conn.sendall(codec.encode(message))
    except (OSError, codec.CodecError):
        return  # the evaluator went away; its own side reports that


def _in_worker(load: Callable[[], Predict], request: codec.Message, listener: socket.socket,
               conn: socket.socket, deadline: float, max_bytes: int,
               sweep: bool) -> codec.Message:
    """Fork a worker for one request; return its answer, checked, or an error message."""
    read_fd, write_fd = os.pipe()
    pid = os.fork()
    if pid == 0:  # the worker: never returns
        os.close(read_fd)
        _worker(load, request, write_fd, (listener, conn))
    os.close(write_fd)
    try:
        data, why = _collect(read_fd, deadline, max_bytes)
    finally:
        os.close(read_fd)
        _kill(pid, sweep)
        _reap(pid)
    if why is not None:
        return {"error": why}
    try:
        return codec.decode(data, max_bytes)
    except codec.CodecError as exc:
        return {"error": f"the worker's answer is malformed: {exc}"}


def _worker(load: Callable[[], Predict], request: codec.Message, fd: int,
            sockets: tuple[socket.socket, ...]) -> None:
    code = 1
    try:
        os.setsid()
        for sock in sockets:
            sock.close()
        try:
            if not landlock.restrict(read_paths()):
                _note("Landlock is not available here: the worker runs with the container's "
                      "isolation only")
        except OSError as exc:
            _note(f"Landlock refused ({exc}): the worker runs with the container's isolation only")
        try:
            answer = load()(request)
            data = codec.encode(answer)
        except BaseException as exc:  # the model's failure is an answer, not the server's
            data = codec.encode({"error": f"{type(exc).__name__}: {str(exc)[:2000]}"})
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view):]
        code = 0
    finally:
        os._exit(code)


def _collect(fd: int, deadline: float, max_bytes: int) -> tuple[bytes, str | None]:
    parts, size, cap = [], 0, max_bytes + codec.MAX_HEADER_BYTES + 8
    while True:
        left = deadline - time.monotonic()
        if left <= 0:
            return b"", "the model did not answer in time"
        ready, _, _ = select.select([fd], [], [], left)
        if not ready:
            continue
        chunk = os.read(fd, 1 << 20)
        if not chunk:
            break
        size += len(chunk)
        if size > cap:
            return b"", f"the model's answer is over {cap} bytes"
        parts.append(chunk)
    if not parts:
        return b"", "the worker died without answering"
    return b"".join(parts), None


def _kill(pid: int, sweep: bool) -> None:
    """SIGKILL the worker's process group; with ``sweep``, every process in this container but
    init and the supervisor (and its parent): a worker's child may have left the group."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, signal.SIGKILL)
    if not sweep:
        return
    keep = {1, os.getpid(), os.getppid()}
    for entry in os.listdir("/proc"):
        if entry.isdigit() and int(entry) not in keep:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(int(entry), signal.SIGKILL)


def _reap(pid: int) -> None:
    with contextlib.suppress(ChildProcessError):
        os.waitpid(pid, 0)
    while True:  # orphans re-parented to us, if we are the subreaper
        try:
            if os.waitpid(-1, os.WNOHANG)[0] == 0:
                return
        except ChildProcessError:
            return


def _clean(folders: tuple[str, ...]) -> list[str]:
    """Empty each folder; return what could not be removed (nothing, normally)."""
    left = []
    for folder in folders:
        try:
            entries = list(os.scandir(folder))
        except FileNotFoundError:
            continue
        except OSError as exc:
            left.append(f"{folder}: {exc.strerror}")
            continue
        for entry in entries:
            try:
                if entry.is_dir(follow_symlinks=False):
                    shutil.rmtree(entry.path)
                else:
                    os.unlink(entry.path)
            except FileNotFoundError:
                continue  # gone already (a worker's leftover removed with its parent)
            except OSError as exc:
                left.append(f"{entry.path}: {exc.strerror}")
    return left


def _note(text: str) -> None:
    sys.stderr.write(f"sandbox.serve: {text}\n")
    sys.stderr.flush()


# -- TorchScript models -----------------------------------------------------------------------


def torchscript(path: str | None = None) -> Callable[[], Predict]:
    """``load`` for a TorchScript model at ``path`` (``$SELFPROG_OUT/model.pt``).

    Its ``predict`` takes ``{"x": array}`` (and ``"last": true`` to keep only the last position
    of a sequence output) and answers ``{"y": float32 or int64 array, "params": count}``.
    """
    import io
    import warnings

    import torch  # here, in the supervisor: every worker forks with it already loaded

    where = path or str(Path(os.environ.get("SELFPROG_OUT", "/out")) / "model.pt")

    def load() -> Predict:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            with open(where, "rb") as handle:
                module = torch.jit.load(io.BytesIO(handle.read()), map_location="cpu").eval()
        params = int(sum(p.numel() for p in module.parameters()))

        def predict(request: codec.Message) -> codec.Message:
            x = request.get("x")
            if not hasattr(x, "dtype"):
                raise ValueError("the request needs an array 'x'")
            # a worker runs the module once: the JIT's profiling and re-optimising would cost
            # more than they save (they are for the many calls of a long-lived process)
            with torch.no_grad(), torch.jit.optimized_execution(False):
                y = module(torch.from_numpy(x))
            if not isinstance(y, torch.Tensor):
                raise ValueError(f"forward returned {type(y).__name__}, not a tensor")
            if request.get("last") is True:
                y = y[:, -1]
            y = y.detach().cpu()
            y = y.float() if y.is_floating_point() else y.long()
            return {"y": y.numpy(), "params": params}

        return predict

    return load


def expect(answer: codec.Message, name: str, shape: tuple[int, ...],
           kinds: str = "f") -> Any:
    """``answer[name]`` as a numpy array of ``shape`` whose dtype kind is in ``kinds`` and whose
    values are all finite.

    Raises:
        RemoteError: missing, of another shape or dtype, or not finite.
    """
    import numpy as np

    value = answer.get(name)
    if not isinstance(value, np.ndarray):
        raise RemoteError(f"the answer has no array {name!r}")
    if tuple(value.shape) != tuple(shape) or value.dtype.kind not in kinds:
        raise RemoteError(f"{name!r} is {value.dtype} {tuple(value.shape)}, expected "
                          f"{tuple(shape)} of kind {kinds!r}")
    if value.dtype.kind == "f" and not np.isfinite(value).all():
        raise RemoteError(f"{name!r} is not all finite")
    return value


def count(answer: codec.Message, name: str = "params") -> int:
    """A non-negative integer the server reported (0 when absent or malformed): telemetry only,
    since the model side is the variant's code."""
    value = answer.get(name)
    return value if isinstance(value, int) and not isinstance(value, bool) and value >= 0 else 0

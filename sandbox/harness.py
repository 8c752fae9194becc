"""The container entrypoint: ``python -m sandbox.harness STAGE SCRIPT``.

The harness runs the program as a child with a dedicated protocol pipe (``SELFPROG_PROTOCOL_FD``)
and is the only writer of the container's stdout. It writes ``hello`` first, forwards the child's
protocol lines (capped in length and number), turns the child's own stdout and stderr into capped
``log`` messages, and writes ``exit`` last. So nothing a program prints can pass for a message.

In the TRAIN stage the child restricts itself with Landlock before it runs the variant's code
(:mod:`sandbox.landlock`): it may read anything the container shows but write only beneath
``SELFPROG_OUT``, ``/tmp`` and ``/dev``, so it can no longer reach the harness's stdout through
``/proc/<pid>/fd/1``, signal the harness, or open TCP. Where the kernel has no Landlock a warning
goes to the stage log and the container's isolation is all there is.

SIGTERM is forwarded to the child's process group, followed by SIGKILL after a grace period. The
harness also keeps its own clock: with ``SELFPROG_STAGE_TIMEOUT_S`` set it stops the child the same
way once the stage timeout and one grace period have passed with no word from the host, so a
container whose orchestrator (or cluster node agent) died does not run on for ever. When
the child exits, the harness stops waiting for pipes that its orphans may hold open, kills what is
left of the group, and reports. With ``SELFPROG_LINGER_S`` set (the TRAIN stage), it then waits to
be stopped so the host can copy ``SELFPROG_OUT`` out of the live container.

It imports no third-party package: it starts in every container, so it must start fast.
"""

from __future__ import annotations

import json
import os
import selectors
import signal
import subprocess
import sys
import time
from pathlib import Path

from sandbox import landlock
from sandbox.limits import (
    MAX_LINE_BYTES,
    MAX_LOG_LINES,
    MAX_MESSAGES,
    MAX_STAGE_OUTPUT_BYTES,
    MAX_TEXT,
    PROGRAM_MESSAGE_TYPES,
    PROTOCOL_VERSION,
)

DRAIN_S = 1.0
"""How long to keep reading after the child exits; orphans may hold its pipes open forever."""
_CGROUP = Path("/sys/fs/cgroup")


class _Lines:
    """Split one fd's bytes into lines, dropping (and counting) any over ``MAX_LINE_BYTES``."""

    def __init__(self) -> None:
        self.buffer = b""
        self.overlong = False

    def feed(self, chunk: bytes) -> tuple[list[bytes], int]:
        lines, dropped = [], 0
        self.buffer += chunk
        while True:
            cut = self.buffer.find(b"\n")
            if cut < 0:
                break
            line, self.buffer = self.buffer[:cut], self.buffer[cut + 1:]
            if self.overlong:
                self.overlong, dropped = False, dropped + 1
            elif len(line) <= MAX_LINE_BYTES:
                lines.append(line)
            else:
                dropped += 1
        if len(self.buffer) > MAX_LINE_BYTES:
            self.buffer, self.overlong = b"", True
        return lines, dropped

    def rest(self) -> list[bytes]:
        line, self.buffer = self.buffer, b""
        return [line] if line and not self.overlong else []


class Harness:
    def __init__(self, stage: str, script: str) -> None:
        self.stage, self.script = stage, script
        self.grace_s = float(os.environ.get("SELFPROG_GRACE_S", "2"))
        self.messages = self.logs = self.dropped = self.written = 0
        self.term_at: float | None = None
        timeout = os.environ.get("SELFPROG_STAGE_TIMEOUT_S")
        self.deadline = (time.monotonic() + float(timeout) + self.grace_s) if timeout else None
        """When the harness stops its child itself: the host should have stopped it by then."""
        self.child: subprocess.Popen[bytes] | None = None

    def emit(self, message: dict) -> None:
        message = {"v": PROTOCOL_VERSION, "t": time.time(), **message}
        self.write_line(json.dumps(message, allow_nan=False).encode())

    def write_line(self, line: bytes) -> None:
        if self.written + len(line) + 1 > MAX_STAGE_OUTPUT_BYTES - 4096:  # room left for `exit`
            self.dropped += 1
            return
        data = memoryview(line + b"\n")
        while data:
            data = data[os.write(1, data):]
        self.written += len(line) + 1

    def protocol_line(self, line: bytes) -> None:
        try:
            kind = json.loads(line).get("type")
        except (ValueError, AttributeError):
            kind = None
        if kind not in PROGRAM_MESSAGE_TYPES or self.messages >= MAX_MESSAGES:
            self.dropped += 1
            return
        self.messages += 1
        self.write_line(line)

    def output_line(self, stream: str, line: bytes) -> None:
        if self.logs >= MAX_LOG_LINES:
            self.dropped += 1
            return
        self.logs += 1
        text = line.decode("utf-8", "replace")[:MAX_TEXT]
        self.emit({"type": "log", "stream": stream, "text": text})
        if self.logs == MAX_LOG_LINES:
            self.emit({"type": "log", "stream": "harness", "text": "output cap reached"})

    def on_term(self, _signum: int, _frame: object) -> None:
        self.term_at = self.term_at or time.monotonic()
        self.signal_group(signal.SIGTERM)

    def signal_group(self, sig: int) -> None:
        if self.child is None:
            return
        try:
            os.killpg(self.child.pid, sig)
        except ProcessLookupError:
            return  # the whole group is gone already

    def run(self) -> int:
        start = time.monotonic()
        self.emit({"type": "hello", "stage": self.stage, "pid": os.getpid(),
                   "program": os.environ.get("SELFPROG_PROGRAM", "")[:128]})
        signal.signal(signal.SIGTERM, self.on_term)
        read_fd, write_fd = os.pipe()
        env = {**os.environ, "SELFPROG_PROTOCOL_FD": str(write_fd), "SELFPROG_STAGE": self.stage}
        env.pop("SELFPROG_LINGER_S", None)
        restrict = None
        if self.stage == "train":
            if landlock.abi_version():
                restrict = _restrict_train
            else:
                self.emit({"type": "log", "stream": "harness", "text": "warning: this kernel has "
                           "no Landlock; TRAIN runs with the container's isolation only"})
        try:
            self.child = subprocess.Popen(
                [sys.executable, self.script], stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                stderr=subprocess.PIPE, pass_fds=(write_fd,), env=env, start_new_session=True,
                preexec_fn=restrict)  # noqa: PLW1509 - the harness has no other thread
        except OSError as exc:
            self.emit({"type": "error", "kind": "harness", "message": f"cannot start: {exc}"})
            return self.finish(127, start)
        finally:
            os.close(write_fd)
        if self.term_at is not None:  # SIGTERM came while the child was being started
            self.signal_group(signal.SIGTERM)
        assert self.child.stdout is not None and self.child.stderr is not None  # both PIPE
        self.pump({read_fd: "protocol", self.child.stdout.fileno(): "stdout",
                   self.child.stderr.fileno(): "stderr"})
        code = self.child.wait()
        self.signal_group(signal.SIGKILL)  # orphans of the group do not outlive the program
        return self.finish(code, start)

    def pump(self, fds: dict[int, str]) -> None:
        selector = selectors.DefaultSelector()
        splitters = {fd: _Lines() for fd in fds}
        for fd in fds:
            os.set_blocking(fd, False)
            selector.register(fd, selectors.EVENT_READ)
        exited_at: float | None = None
        while fds:
            now = time.monotonic()
            if self.deadline is not None and self.term_at is None and now > self.deadline:
                self.emit({"type": "log", "stream": "harness", "text": "stage timeout passed "
                           "and the host has not stopped the stage: stopping the program"})
                self.on_term(signal.SIGTERM, None)
            if self.term_at is not None and now > self.term_at + self.grace_s:
                self.signal_group(signal.SIGKILL)
            if exited_at is None and self.child is not None and self.child.poll() is not None:
                exited_at = now
            if exited_at is not None and now > exited_at + DRAIN_S:
                break
            for key, _ in selector.select(timeout=0.1):
                fd = key.fd
                try:
                    chunk = os.read(fd, 65536)
                except BlockingIOError:
                    continue
                lines, dropped = splitters[fd].feed(chunk) if chunk else (splitters[fd].rest(), 0)
                self.dropped += dropped
                for line in lines:
                    self.route(fds[fd], line)
                if not chunk:
                    selector.unregister(fd)
                    del fds[fd]
        selector.close()

    def route(self, source: str, line: bytes) -> None:
        if source == "protocol":
            self.protocol_line(line)
        else:
            self.output_line(source, line)

    def finish(self, code: int, start: float) -> int:
        peak, ooms = cgroup_memory()
        self.emit({"type": "exit", "code": code, "duration_s": round(time.monotonic() - start, 4),
                   "dropped": self.dropped, "peak_memory_bytes": peak, "oom_kills": ooms})
        linger = float(os.environ.get("SELFPROG_LINGER_S", "0"))
        if linger > 0:
            signal.signal(signal.SIGTERM, signal.SIG_DFL)
            time.sleep(linger)  # the host copies SELFPROG_OUT, then removes the container
        return code if 0 <= code < 256 else 128 + (-code % 128)


def _restrict_train() -> None:
    """In the TRAIN child, before exec: write only beneath SELFPROG_OUT, /tmp and /dev."""
    try:
        landlock.restrict(["/"], [os.environ.get("SELFPROG_OUT", "/out"), "/tmp", "/dev"])
    except OSError as exc:  # stderr is already the pipe the harness logs
        os.write(2, f"warning: Landlock refused ({exc}); TRAIN runs with the container's "
                    "isolation only\n".encode())


def cgroup_memory() -> tuple[int | None, int | None]:
    """The container's peak memory and OOM-kill count from its cgroup (v1 or v2), if readable."""
    peak = _read_int(_CGROUP / "memory" / "memory.max_usage_in_bytes")
    ooms = _read_field(_CGROUP / "memory" / "memory.oom_control", "oom_kill")
    if peak is None:
        peak = _read_int(_CGROUP / "memory.peak")
        ooms = _read_field(_CGROUP / "memory.events", "oom_kill")
    return peak, ooms


def _read_int(path: Path) -> int | None:
    try:
        return int(path.read_text().strip())
    except (OSError, ValueError):
        return None


def _read_field(path: Path, name: str) -> int | None:
    try:
        lines = path.read_text().splitlines()
    except OSError:
        return None
    for line in lines:
        key, _, value = line.partition(" ")
        if key == name and value.strip().isdigit():
            return int(value)
    return None


def main(argv: list[str]) -> int:
    if len(argv) != 2 or argv[0] not in ("train", "eval"):
        print("usage: python -m sandbox.harness {train,eval} SCRIPT", file=sys.stderr)
        return 2
    return Harness(*argv).run()


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

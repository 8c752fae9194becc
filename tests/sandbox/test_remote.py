"""The model server and its client, as local processes: one fresh, restricted worker per request;
a model that fails, hangs, dies, floods or keeps state gets an error, never a usable answer.

The server here never sweeps processes or wipes folders (``sweep=False``, ``wipe=()``): that is
for its own container only."""

from __future__ import annotations

import os
import socket
import struct
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from sandbox import codec, landlock, remote


@pytest.fixture
def server(tmp_path):
    """Start ``remote.serve(load)`` in a forked process; yields a starter returning the client."""
    pids: list[int] = []

    def start(load, **kwargs) -> remote.RemoteModel:
        path = str(tmp_path / f"m{len(pids)}.sock")
        pid = os.fork()
        if pid == 0:
            try:
                remote.serve(load, path, sweep=False, wipe=(), **kwargs)
            finally:
                os._exit(0)
        pids.append(pid)
        return remote.remote_model(path, connect_s=10, timeout_s=20)

    yield start
    for pid in pids:
        os.kill(pid, 9)
        os.waitpid(pid, 0)


def doubler():
    def predict(request):
        return {"y": request["x"] * 2, "pid": os.getpid()}
    return predict


def test_each_request_is_answered_by_a_fresh_worker(server):
    model = server(doubler)
    first = model(x=np.arange(5))
    second = model(x=np.arange(3, dtype=np.float32))
    assert first["y"].tolist() == [0, 2, 4, 6, 8] and second["y"].dtype == np.float32
    assert first["pid"] != second["pid"] != os.getpid()


COUNT = [0]


def remembers():
    COUNT[0] += 1  # in a fresh worker, always the supervisor's 0 plus one

    def predict(request):
        COUNT[0] += 1
        return {"calls": COUNT[0]}
    return predict


def test_nothing_a_worker_changes_in_memory_reaches_the_next(server):
    model = server(remembers)
    assert [model(x=np.zeros(1))["calls"] for _ in range(3)] == [2, 2, 2]


def writes_state(tmp: Path):
    def load():
        def predict(request):
            (tmp / "state.txt").write_text("seen")
            return {"ok": True}
        return predict
    return load


def test_a_worker_cannot_write_files_to_keep_state(server, tmp_path):
    if not landlock.abi_version():
        pytest.skip("this kernel has no Landlock")
    model = server(writes_state(tmp_path))
    with pytest.raises(remote.RemoteError, match="PermissionError"):
        model(x=np.zeros(1))
    assert not (tmp_path / "state.txt").exists()


def from_file_state(tmp: Path):
    def load():
        import torch

        def predict(request):
            state = torch.from_file(str(tmp / "shared.bin"), shared=True, size=4,
                                    dtype=torch.uint8)
            state += 1
            return {"y": state.numpy().copy()}
        return predict
    return load


def test_a_model_cannot_map_a_shared_file_to_carry_state(server, tmp_path):
    if not landlock.abi_version():
        pytest.skip("this kernel has no Landlock")
    model = server(from_file_state(tmp_path))
    for _ in range(2):
        with pytest.raises(remote.RemoteError, match="model failed"):
            model(x=np.zeros(1))
    assert not (tmp_path / "shared.bin").exists()


def reads(path: Path):
    def load():
        def predict(request):
            return {"text": path.read_text()}
        return predict
    return load


def test_a_worker_cannot_read_outside_its_allowance(server, tmp_path):
    if not landlock.abi_version():
        pytest.skip("this kernel has no Landlock")
    secret = tmp_path / "heldout.txt"
    secret.write_text("labels")
    with pytest.raises(remote.RemoteError, match="PermissionError"):
        server(reads(secret))(x=np.zeros(1))


def sleeps():
    def predict(request):
        if request.get("hang"):
            time.sleep(60)
        return {"ok": True}
    return predict


def test_a_hanging_worker_is_killed_at_the_deadline_and_the_server_goes_on(server):
    model = server(sleeps, request_s=1.0)
    started = time.monotonic()
    with pytest.raises(remote.RemoteError, match="did not answer in time"):
        model(x=np.zeros(1), hang=True)
    assert time.monotonic() - started < 10
    assert model(x=np.zeros(1))["ok"] is True


def dies():
    def predict(request):
        os._exit(3)
    return predict


def test_a_worker_that_dies_is_an_error(server):
    with pytest.raises(remote.RemoteError, match="died without answering"):
        server(dies)(x=np.zeros(1))


def floods():
    def predict(request):
        return {"y": np.zeros(2000, dtype=np.float64)}
    return predict


def test_an_oversized_answer_is_refused(server):
    with pytest.raises(remote.RemoteError, match="arrays of 16000 bytes together; at most 1000"):
        server(floods, max_bytes=1000)(x=np.zeros(1))


def test_the_client_refuses_an_oversized_answer_whatever_the_server(tmp_path):
    path = str(tmp_path / "fake.sock")
    fake_server(path, codec.encode({"y": np.zeros(2000)}))
    with pytest.raises(remote.RemoteError, match="at most 1000"):
        remote.remote_model(path, connect_s=5, timeout_s=5, max_bytes=1000)(x=np.zeros(1))


def unsendable():
    def predict(request):
        return {"y": np.array([object()])}
    return predict


def test_an_answer_that_is_not_plain_data_is_an_error(server):
    with pytest.raises(remote.RemoteError, match="cannot travel"):
        server(unsendable)(x=np.zeros(1))


def fake_server(path: str, reply: bytes | None, hold_s: float = 0.0) -> threading.Thread:
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(path)
    listener.listen(1)

    def run() -> None:
        conn, _ = listener.accept()
        conn.recv(1 << 16)
        if reply is not None:
            conn.sendall(reply)
        time.sleep(hold_s)
        conn.close()
        listener.close()

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread


@pytest.mark.parametrize("reply, reason", [
    (b"", "malformed: the message ended"),
    (b"\x80\x04pickled", "malformed: not a message"),
    (codec.MAGIC + struct.pack(">I", 9) + b'{"values"', "malformed: header is not JSON"),
    (codec.encode({"y": np.zeros(10)})[:-3], "malformed: the message ended"),
    (codec.encode({"error": "boom"}), "the model failed: boom"),
])
def test_a_malformed_or_failed_answer_is_a_clear_error(tmp_path, reply, reason):
    path = str(tmp_path / "fake.sock")
    fake_server(path, reply)
    with pytest.raises(remote.RemoteError, match=reason):
        remote.remote_model(path, connect_s=5, timeout_s=5)(x=np.zeros(1))


def test_a_server_that_never_answers_times_out(tmp_path):
    path = str(tmp_path / "fake.sock")
    fake_server(path, None, hold_s=5)
    started = time.monotonic()
    with pytest.raises(remote.RemoteError, match="did not answer within 1 s"):
        remote.remote_model(path, connect_s=5, timeout_s=1)(x=np.zeros(1))
    assert time.monotonic() - started < 4


def test_no_server_is_a_clear_error_after_the_connect_wait(tmp_path):
    with pytest.raises(remote.RemoteError, match="no model server"):
        remote.remote_model(str(tmp_path / "none.sock"), connect_s=0.3)(x=np.zeros(1))


def test_expect_checks_shape_dtype_and_finiteness():
    answer = {"y": np.zeros((2, 3), dtype=np.float32), "bad": np.array([np.nan]), "n": 3}
    assert remote.expect(answer, "y", (2, 3)).shape == (2, 3)
    for name, shape, reason in [("y", (3, 2), "expected"), ("bad", (1,), "not all finite"),
                                ("n", (), "no array"), ("missing", (), "no array")]:
        with pytest.raises(remote.RemoteError, match=reason):
            remote.expect(answer, name, shape)
    with pytest.raises(remote.RemoteError, match="kind"):
        remote.expect(answer, "y", (2, 3), kinds="i")
    assert remote.count({"params": 5}) == 5
    assert remote.count({"params": -1}) == remote.count({"params": True}) == 0


def test_the_wipe_between_requests_empties_its_folders_and_says_what_it_could_not(tmp_path):
    """What a request left in /tmp or /dev/shm must not reach the next one: the supervisor
    empties them, and stops serving (fails closed) when something cannot be removed."""
    from sandbox.remote import _clean

    tmp = tmp_path / "tmp"
    (tmp / "deep" / "er").mkdir(parents=True)
    (tmp / "deep" / "er" / "state.bin").write_bytes(b"x" * 100)
    (tmp / "file").write_text("kept state")
    (tmp / "link").symlink_to(tmp_path)
    assert _clean((str(tmp), str(tmp_path / "absent"))) == []
    assert list(tmp.iterdir()) == [] and tmp_path.is_dir(), "a link is removed, not followed"
    not_a_folder = tmp_path / "plain"
    not_a_folder.write_text("x")
    assert _clean((str(not_a_folder),)) != []

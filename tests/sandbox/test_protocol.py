"""The protocol models: what a valid line is, and every way a line can be refused."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from sandbox import protocol
from sandbox.protocol import ProtocolError, parse_line


@pytest.mark.parametrize(
    "message",
    [
        protocol.Hello(stage="train", program="codelm", pid=7),
        protocol.Progress(step=3, metrics={"loss": 2.5, "lr": 1e-3}),
        protocol.Result(metrics={"val_bpb": 1.9}),
        protocol.Artifact(path="model.pt", bytes=1024),
        protocol.Log(stream="stdout", text="hello"),
        protocol.Error(kind="data", message="missing file"),
        protocol.Exit(code=-9, duration_s=1.5, dropped=2),
    ],
)
def test_every_message_type_round_trips(message):
    assert parse_line(protocol.dump(message)) == message


@pytest.mark.parametrize(
    ("line", "reason"),
    [
        ("{not json", "not JSON"),
        ("[1, 2]", "JSON object"),
        ('{"v": 1, "t": 0, "type": "teleport"}', "invalid message"),
        ('{"v": 2, "t": 0, "type": "result", "metrics": {"a": 1}}', "invalid message"),
        ('{"v": 1, "t": 0, "type": "result", "metrics": {"a": NaN}}', "not JSON"),
        ('{"v": 1, "t": 0, "type": "result", "metrics": {"a": Infinity}}', "not JSON"),
        ('{"v": 1, "t": 0, "type": "result", "metrics": {"a": 1e999}}', "not finite"),
        ('{"v": 1, "t": 0, "type": "result", "metrics": {"a": 1}, "forged": true}', "invalid"),
        ('{"v": 1, "t": 0, "type": "result", "metrics": {"bad name!": 1}}', "identifier"),
        ('{"v": 1, "t": 0, "type": "progress", "step": -1}', "invalid message"),
    ],
)
def test_bad_lines_are_refused_with_a_reason(line, reason):
    with pytest.raises(ProtocolError, match=reason):
        parse_line(line)


def test_an_over_long_line_is_refused_before_parsing():
    text = "x" * (protocol.MAX_LINE_BYTES + 1)
    line = json.dumps({"v": 1, "t": 0, "type": "log", "text": text})
    with pytest.raises(ProtocolError, match="over the"):
        parse_line(line)


def test_too_many_metrics_are_refused():
    metrics = {f"m{i}": float(i) for i in range(protocol.MAX_METRICS + 1)}
    line = json.dumps({"v": 1, "t": 0, "type": "result", "metrics": metrics})
    with pytest.raises(ProtocolError, match="at most"):
        parse_line(line)


def test_the_published_schema_matches_the_models():
    published = Path(protocol.__file__).with_name("protocol.schema.json")
    assert json.loads(published.read_text()) == protocol.json_schema(), (
        "sandbox/protocol.schema.json is stale: run `make schema`"
    )


def test_report_writes_to_the_protocol_fd_not_stdout(tmp_path, capfd):
    import os
    import subprocess
    import sys

    read, write = os.pipe()
    code = (
        "from sandbox import report; print('plain output');"
        "report.progress(step=1, loss=0.5); report.result(acc=0.9)"
    )
    env = {**os.environ, "SELFPROG_PROTOCOL_FD": str(write)}
    done = subprocess.run([sys.executable, "-c", code], env=env, pass_fds=(write,),
                          capture_output=True, text=True, check=True)
    os.close(write)
    with os.fdopen(read) as channel:
        messages = [parse_line(line) for line in channel]
    assert done.stdout == "plain output\n"
    assert [m.type for m in messages] == ["progress", "result"]
    assert messages[1].metrics == {"acc": 0.9}

"""Host-side validation of a stage's stream: what it keeps, what it refuses."""

from __future__ import annotations

import io
import json

from orchestrator.containers.telemetry import FORGED, MAX_TELEMETRY_KEYS, StageStream
from sandbox.limits import MAX_LINE_BYTES


def stream(stage: str, *lines: bytes) -> StageStream:
    s = StageStream(stage, io.StringIO(), io.StringIO())
    s.feed(b"".join(line + b"\n" for line in lines))
    s.close()
    return s


def line(**message) -> bytes:
    return json.dumps({"v": 1, **message}).encode()


def test_a_result_from_the_train_stage_is_a_forgery_not_a_metric():
    s = stream("train", line(type="result", metrics={"loss": 0.0}))
    assert s.result is None and FORGED in s.violations


def test_the_eval_stages_result_is_kept():
    s = stream("eval", line(type="result", metrics={"loss": 1.5}))
    assert s.result is not None and s.result.metrics == {"loss": 1.5}


def test_garbage_nan_and_unknown_types_are_violations_not_crashes():
    s = stream("train", b"{not json", b'{"v": 1, "type": "progress", "step": 1, "metrics": '
               b'{"a": NaN}}', line(type="mystery"), b"[]")
    assert s.messages == 0 and s.violation_count == 4


def test_an_over_long_line_is_dropped_and_the_next_one_read():
    s = StageStream("train", io.StringIO(), io.StringIO())
    s.feed(b"x" * (MAX_LINE_BYTES + 10))
    s.feed(b"yyy\n" + line(type="progress", step=3, metrics={"loss": 2.0}) + b"\n")
    assert s.telemetry["loss"] == 2.0 and s.violation_count == 1


def test_reading_stops_at_exit():
    s = stream("eval", line(type="exit", code=0, duration_s=1.0),
               line(type="result", metrics={"loss": 0.0}))
    assert s.done and s.result is None


def test_violations_kept_are_capped():
    s = stream("train", *[b"bad"] * 500)
    assert s.violation_count == 500 and len(s.violations) <= 21


def test_distinct_progress_metric_names_are_capped():
    lines = [line(type="progress", step=i, metrics={f"k{i}_{j}": 1.0 for j in range(50)})
             for i in range(100)]
    s = stream("train", *lines, line(type="progress", step=100, metrics={"k0_0": 7.0}))
    assert len(s.telemetry) == MAX_TELEMETRY_KEYS
    assert s.telemetry["k0_0"] == 7.0 and s.telemetry["step"] == 100.0  # kept names still update
    assert s.telemetry["progress_messages"] == 101
    assert s.dropped_keys == 5000 - (MAX_TELEMETRY_KEYS - 2)
    assert len([v for v in s.violations if "distinct progress metrics" in v]) == 1


def _log_lines(text: str, count: int) -> bytes:
    return b"\n".join(line(type="log", stream="stdout", text=text) for _ in range(count))


def test_the_log_cap_counts_bytes_not_characters(tmp_path):
    from orchestrator.containers.telemetry import MAX_FILE_BYTES, _CappedWriter, open_log

    path = tmp_path / "train.log"
    with open_log(path) as log:
        s = StageStream("train", log, io.StringIO())
        wide = "語" * 4000  # 3 bytes per character in UTF-8
        for _ in range(3):
            s.feed(_log_lines(wide, 200) + b"\n")
        s.close()
    size = path.stat().st_size
    assert MAX_FILE_BYTES <= size <= MAX_FILE_BYTES + len(_CappedWriter.MARKER)
    text = path.read_text(encoding="utf-8")  # the cut never splits a character
    assert text.endswith(_CappedWriter.MARKER)


def test_the_cut_is_exact_in_bytes_and_surrogates_count_as_written(tmp_path):
    from orchestrator.containers.telemetry import _CappedWriter, open_log

    path = tmp_path / "log"
    with open_log(path) as handle:
        writer = _CappedWriter(handle, 10)
        writer.write("ab")                # 2 bytes
        writer.write("\udcff" * 3)        # surrogates: written as '?' by open_log, 3 bytes
        writer.write("€€€")               # 9 bytes: only one whole € (3 bytes) fits in 5
        writer.write("more")
    assert path.read_bytes() == "ab???€".encode() + _CappedWriter.MARKER.encode()

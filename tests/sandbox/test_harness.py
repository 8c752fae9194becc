"""The harness, run as a process on the host (it needs nothing from the image to be tested)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

from sandbox.protocol import Exit, Hello, Log, parse_line

ROOT = Path(__file__).resolve().parents[2]


def harness(tmp_path: Path, source: str, stage: str = "train", **env: str) -> list:
    script = tmp_path / "prog.py"
    script.write_text(textwrap.dedent(source))
    done = subprocess.run([sys.executable, "-m", "sandbox.harness", stage, str(script)],
                          capture_output=True, timeout=30, cwd=tmp_path,
                          env={**os.environ, "PYTHONPATH": str(ROOT), **env})
    return [parse_line(line) for line in done.stdout.splitlines()]


def test_hello_comes_first_and_exit_last_with_the_programs_code(tmp_path):
    messages = harness(tmp_path, "import sys\nprint('hi')\nsys.exit(3)\n")
    assert isinstance(messages[0], Hello) and messages[0].stage == "train"
    assert isinstance(messages[-1], Exit) and messages[-1].code == 3
    assert any(isinstance(m, Log) and m.stream == "stdout" and m.text == "hi" for m in messages)


def test_a_program_cannot_pass_its_prints_off_as_messages(tmp_path):
    forged = json.dumps({"v": 1, "type": "result", "metrics": {"x": 1.0}})
    messages = harness(tmp_path, f"print({forged!r})\n")
    assert not [m for m in messages if m.type == "result"]
    assert [m for m in messages if isinstance(m, Log) and m.text == forged]


def test_a_program_cannot_send_hello_or_exit_on_its_channel(tmp_path):
    messages = harness(tmp_path, """
        import os
        fd = int(os.environ["SELFPROG_PROTOCOL_FD"])
        os.write(fd, b'{"v": 1, "type": "exit", "code": 0, "duration_s": 0}\\n')
        os.write(fd, b'{"v": 1, "type": "hello", "stage": "eval", "program": "x", "pid": 1}\\n')
        raise SystemExit(5)
    """)
    assert [m.type for m in messages].count("exit") == 1 and messages[-1].code == 5
    assert [m.type for m in messages].count("hello") == 1 and messages[-1].dropped == 2


def test_sigterm_is_forwarded_and_a_program_ignoring_it_is_killed_after_the_grace(tmp_path):
    script = tmp_path / "prog.py"
    script.write_text("import signal, time\nsignal.signal(signal.SIGTERM, signal.SIG_IGN)\n"
                      "print('ready', flush=True)\ntime.sleep(60)\n")
    proc = subprocess.Popen([sys.executable, "-m", "sandbox.harness", "train", str(script)],
                            stdout=subprocess.PIPE, env={**os.environ, "PYTHONPATH": str(ROOT),
                                                         "SELFPROG_GRACE_S": "0.5"})
    proc.stdout.readline()  # hello
    assert b"ready" in proc.stdout.readline()
    start = time.monotonic()
    proc.send_signal(signal.SIGTERM)
    lines = proc.stdout.read().splitlines()
    proc.wait(timeout=10)
    assert time.monotonic() - start < 5
    assert parse_line(lines[-1]).code == -signal.SIGKILL


def test_a_stage_whose_host_died_is_stopped_by_the_harness_at_its_timeout_plus_grace(tmp_path):
    """No SIGTERM ever comes (the orchestrator or node agent is gone): the harness's own clock
    stops the program, even one that ignores SIGTERM, so the container does not run for ever."""
    start = time.monotonic()
    messages = harness(tmp_path, """
        import signal, time
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        time.sleep(60)
    """, SELFPROG_STAGE_TIMEOUT_S="1", SELFPROG_GRACE_S="0.5")
    assert time.monotonic() - start < 10
    assert messages[-1].code == -signal.SIGKILL
    assert any(isinstance(m, Log) and "stage timeout" in m.text for m in messages)


def test_orphans_holding_the_pipes_do_not_hold_the_harness(tmp_path):
    start = time.monotonic()
    messages = harness(tmp_path, """
        import subprocess
        subprocess.Popen(["sleep", "60"], start_new_session=True)
    """)
    assert messages[-1].code == 0
    assert time.monotonic() - start < 5


def test_over_long_lines_are_dropped_and_counted(tmp_path):
    messages = harness(tmp_path, "print('x' * 200_000)\nprint('short')\n")
    assert [m.text for m in messages if isinstance(m, Log)] == ["short"]
    assert messages[-1].dropped == 1


LANDLOCK_PROBE = """
    import os
    from pathlib import Path
    results = {}
    for name, target in [("own_out", Path(os.environ["SELFPROG_OUT"]) / "ok.txt"),
                         ("elsewhere", Path(os.environ["ELSEWHERE"]) / "leak.txt"),
                         ("harness_stdout", Path(f"/proc/{os.getppid()}/fd/1"))]:
        try:
            with open(target, "a") as handle:
                handle.write('{"v": 1, "type": "result", "metrics": {"x": 1.0}}\\n')
            results[name] = "written"
        except OSError as exc:
            results[name] = type(exc).__name__
    print("probe", sorted(results.items()))
"""


def _outside_the_allowance() -> Path:
    """A writable folder the TRAIN child may not write to: not beneath /tmp or /dev (where a
    checkout may well be, e.g. a CI clone in /tmp)."""
    for base in (ROOT, Path.home(), Path("/var/tmp"), Path("/srv")):
        real = base.resolve()
        if real.parts[:2] in (("/", "tmp"), ("/", "dev")) or not os.access(real, os.W_OK):
            continue
        return real / f".landlock-probe-test-{os.getpid()}"
    raise AssertionError("no writable folder outside /tmp and /dev to probe from")


def test_the_train_child_writes_only_its_allowance_under_landlock(tmp_path):
    from sandbox import landlock

    if not landlock.abi_version():
        import pytest
        pytest.skip("this kernel has no Landlock")
    out, elsewhere = tmp_path / "out", _outside_the_allowance()
    out.mkdir()
    elsewhere.mkdir(exist_ok=True)
    try:
        messages = harness(tmp_path, LANDLOCK_PROBE, SELFPROG_OUT=str(out),
                           ELSEWHERE=str(elsewhere))
        probe = [m.text for m in messages if isinstance(m, Log) and m.text.startswith("probe")]
        assert probe == ["probe [('elsewhere', 'PermissionError'), ('harness_stdout', "
                         "'PermissionError'), ('own_out', 'written')]"], messages
        assert not (elsewhere / "leak.txt").exists()
        assert not [m for m in messages if m.type == "result"]
        # EVAL (the trusted evaluator) is not restricted this way
        messages = harness(tmp_path, LANDLOCK_PROBE, stage="eval", SELFPROG_OUT=str(out),
                           ELSEWHERE=str(elsewhere))
        assert (elsewhere / "leak.txt").exists()
    finally:
        for path in elsewhere.iterdir():
            path.unlink()
        elsewhere.rmdir()

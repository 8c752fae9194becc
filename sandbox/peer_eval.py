"""EVAL stage of a peer program: run the peer's evaluator unchanged and report honest metrics.

Started by the harness as the EVAL stage's script (trusted: it ships in the runtime image, never
with a variant). It reads the program's ``program.toml`` and:

1. places the program file the evaluator loads under ``/tmp/selfprog_peer/``: in split isolation a
   stub (:mod:`sandbox.peer_stub`) that forwards calls to the variant's own container; in shared
   isolation (``SELFPROG_PEER_ISOLATION=shared``) the variant's source itself, as the peer would
   (not protected);
2. runs the evaluator as the peer does. OpenEvolve: ``evaluate`` with retries, or the cascade
   ``evaluate_stage1/2/3`` with its thresholds and merges; each call in its own process group,
   SIGKILLed at the stage timeout. ShinkaEvolve: ``evaluate.py --program_path P --results_dir R``
   as a script, then ``R/metrics.json`` and ``R/correct.json`` (``extra.pkl`` is never loaded);
3. maps the metrics: ``combined_score`` is the metric (OpenEvolve's mean of the numeric metrics
   only with ``[peer] averaging = true``); other numbers are reported beside it; text, artifacts
   and ShinkaEvolve's ``text_feedback`` go to the log as untrusted feedback; ``private`` metrics
   are dropped; a non-finite number, a missing score or ``correct: false`` is an ``error`` and
   exit 1 (the variant is ``invalid``).
"""

from __future__ import annotations

import ast
import contextlib
import json
import math
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import tomllib
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from sandbox import peer_stub, report  # noqa: E402

SHIMS = str(Path(__file__).resolve().parent / "shims")
FEEDBACK = "[peer feedback, untrusted]"
FEEDBACK_CAP = 8192
READ_CAP = 4 * 1024 * 1024
_NAME_OK = set("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_.")


class Rejected(Exception):
    """The evaluation did not produce an honest score; the message says why."""


def _env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([SHIMS, str(Path(__file__).resolve().parent.parent)])
    env.pop("SELFPROG_PROTOCOL_FD", None)  # the evaluator's own processes never hold the pipe
    return env


def run_process(argv: list[str], cwd: str, timeout_s: float) -> str | None:
    """Run ``argv`` in its own session; SIGKILL the whole group at ``timeout_s``. Returns None,
    or "timeout"."""
    child = subprocess.Popen(argv, cwd=cwd, env=_env(), start_new_session=True,
                             stdin=subprocess.DEVNULL, pass_fds=())
    try:
        child.wait(timeout=timeout_s)
        return None
    except subprocess.TimeoutExpired:
        return "timeout"
    finally:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(child.pid, signal.SIGKILL)
        child.wait()


def _read_json(path: Path) -> Any:
    with open(path, "rb") as handle:
        data = handle.read(READ_CAP + 1)
    if len(data) > READ_CAP:
        raise Rejected(f"{path.name} is over {READ_CAP} bytes")
    return json.loads(data)


def _value(raw: Any) -> Any:
    if isinstance(raw, dict) and "__float__" in raw:
        return float(raw["__float__"])
    if isinstance(raw, dict) and "__text__" in raw:
        return str(raw["__text__"])
    return raw


# -- OpenEvolve -----------------------------------------------------------------------------------


class Stage:
    def __init__(self, metrics: dict[str, Any], artifacts: dict[str, Any]):
        self.metrics, self.artifacts = metrics, artifacts


def _stage(evaluator: str, function: str, program: str, timeout_s: float) -> Stage | str:
    """One call in its own process: a Stage, "timeout", or the exception's text."""
    work = tempfile.mkdtemp(prefix="stage-")
    out = Path(work, "answer.json")
    why = run_process([sys.executable, "-m", "sandbox.peer_stage", "openevolve", evaluator,
                       function, program, str(out)], str(Path(evaluator).parent), timeout_s)
    try:
        if why == "timeout":
            return "timeout"
        if not out.is_file():
            return "the stage's process died without an answer"
        answer = _read_json(out)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    if "exception" in answer:
        return f"{answer['exception']}\n{answer.get('traceback', '')}"
    return Stage({k: _value(v) for k, v in answer["metrics"].items()}, dict(answer["artifacts"]))


def _number(value: Any) -> bool:
    return isinstance(value, (int, float))


def passes(metrics: dict[str, Any], threshold: float) -> bool:
    """OpenEvolve's cascade gate: ``combined_score`` when numeric, else the mean of the numeric
    metrics but ``error``."""
    if not metrics:
        return False
    if _number(metrics.get("combined_score")):
        return float(metrics["combined_score"]) >= threshold
    values = [float(v) for k, v in metrics.items() if k != "error" and _number(v)]
    return bool(values) and sum(values) / len(values) >= threshold


def _merge(into: Stage, other: Stage) -> None:
    for name, value in other.metrics.items():
        if _number(value) and name != "error":
            into.metrics[name] = float(value)
    into.artifacts.update(other.artifacts)


def openevolve(evaluator: str, program: str, peer: dict[str, Any]) -> Stage:
    timeout = float(peer.get("timeout_s", 300))
    functions = _functions(evaluator)
    thresholds = list(peer.get("cascade_thresholds", [0.5, 0.75, 0.9]))
    if peer.get("cascade_evaluation", True) and "evaluate_stage1" in functions:
        first = _stage(evaluator, "evaluate_stage1", program, timeout)
        if first == "timeout":
            return Stage({"stage1_passed": 0.0, "error": 0.0, "timeout": True},
                         {"failure_stage": "stage1", "timeout": True})
        if isinstance(first, str):
            return Stage({"stage1_passed": 0.0, "error": 0.0},
                         {"stderr": first, "failure_stage": "stage1"})
        if not passes(first.metrics, thresholds[0]) or "evaluate_stage2" not in functions:
            return first
        merged = Stage({}, {})
        for number in (2, 3):
            result = _stage(evaluator, f"evaluate_stage{number}", program, timeout)
            base = first if number == 2 else merged
            if isinstance(result, str):
                base.metrics[f"stage{number}_passed"] = 0.0
                if result == "timeout":
                    base.metrics["timeout"] = True
                    base.artifacts.update({f"stage{number}_timeout": True,
                                           "failure_stage": f"stage{number}"})
                else:
                    base.artifacts.update({f"stage{number}_stderr": result,
                                           "failure_stage": f"stage{number}"})
                return base
            if number == 2:
                _merge(merged, first)
            _merge(merged, result)
            if number == 2 and (len(thresholds) < 2 or not passes(merged.metrics, thresholds[1])
                                or "evaluate_stage3" not in functions):
                return merged
        return merged
    last = "no attempt"
    for _attempt in range(int(peer.get("max_retries", 3)) + 1):
        result = _stage(evaluator, "evaluate", program, timeout)
        if result == "timeout":
            return Stage({"error": 0.0, "timeout": True}, {"timeout": True,
                                                           "failure_stage": "evaluation"})
        if isinstance(result, Stage):
            return result
        last = result
    return Stage({"error": 0.0}, {"stderr": last, "failure_stage": "evaluation"})


def _functions(evaluator: str) -> set[str]:
    tree = ast.parse(Path(evaluator).read_text())
    return {node.name for node in tree.body
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef))}


# -- ShinkaEvolve ---------------------------------------------------------------------------------


def shinka(evaluator: str, program: str, peer: dict[str, Any]) -> Stage:
    results = Path(tempfile.mkdtemp(prefix="results-"))
    why = run_process([sys.executable, evaluator, "--program_path", program, "--results_dir",
                       str(results)], str(Path(evaluator).parent),
                      float(peer.get("timeout_s", 600)))
    if why == "timeout":
        raise Rejected(f"the evaluator ran past {peer.get('timeout_s', 600)} s and was killed")
    if not (results / "metrics.json").is_file():
        raise Rejected("the evaluator wrote no metrics.json")
    metrics = _read_json(results / "metrics.json")
    correct = _read_json(results / "correct.json") if (results / "correct.json").is_file() else {}
    if not isinstance(metrics, dict):
        raise Rejected("metrics.json is not an object")
    if not isinstance(correct, dict) or correct.get("correct") is not True:
        error = correct.get("error") if isinstance(correct, dict) else None
        raise Rejected(f"the evaluator marked the program incorrect: {str(error)[:1000]}")
    out: dict[str, Any] = {}
    artifacts: dict[str, Any] = {}
    for name, value in metrics.items():
        if name == "private":
            continue  # never shown, to anyone
        if name == "public" and isinstance(value, dict):
            for key, item in value.items():
                (out if _number(item) else artifacts)[f"public.{key}"] = item
        elif name == "text_feedback":
            artifacts["text_feedback"] = value
        elif _number(value):
            out[name] = value
        else:
            artifacts[name] = value
    return Stage(out, artifacts)


# -- mapping --------------------------------------------------------------------------------------


def metrics_of(stage: Stage, averaging: bool) -> tuple[dict[str, float], list[str]]:
    """The reported metrics and the feedback lines.

    Raises:
        Rejected: a non-finite number, or no score.
    """
    feedback = [f"{name}: {value}" for name, value in stage.artifacts.items()]
    numbers: dict[str, float] = {}
    for name, value in stage.metrics.items():
        if _number(value) and set(name) <= _NAME_OK and 0 < len(name) <= 64:
            if not math.isfinite(float(value)):
                raise Rejected(f"metric {name!r} is not finite ({value})")
            numbers[name] = float(value)
        else:
            feedback.append(f"{name}: {value}")
    if "combined_score" not in numbers:
        if not averaging:
            detail = "; ".join(feedback)[:1500]
            raise Rejected("the evaluator's result has no numeric combined_score (OpenEvolve's "
                           "mean of the numeric metrics is used only with [peer] averaging = "
                           f"true){': ' + detail if detail else ''}")
        values = [v for k, v in numbers.items() if k != "error"]
        if not values:
            raise Rejected("the evaluator's result has no numeric metric to average")
        numbers["combined_score"] = sum(values) / len(values)
    if len(numbers) > 64:
        keep = dict(list(numbers.items())[:63])
        keep["combined_score"] = numbers["combined_score"]
        numbers = keep
    return numbers, feedback


def main() -> int:
    with open("program.toml", "rb") as handle:
        manifest = tomllib.load(handle)
    section, peer = manifest["program"], manifest.get("peer", {})
    fmt = section.get("format", "openevolve")
    isolation = os.environ.get("SELFPROG_PEER_ISOLATION") or section.get("isolation", "split")
    evaluator = str(Path(section["evaluator"]).resolve())
    place = Path(tempfile.mkdtemp(prefix="selfprog_peer-")) / Path(section["entrypoint"]).name
    if isolation == "split":
        place.write_text(peer_stub.SOURCE)
    else:
        shutil.copyfile(Path(os.environ.get("SELFPROG_OUT", "/out")) / "program.py", place)
        report.log("isolation = shared: the variant runs in the evaluator's process; this "
                   "score is NOT protected")
    try:
        stage = (openevolve if fmt == "openevolve" else shinka)(evaluator, str(place), peer)
        numbers, feedback = metrics_of(stage, bool(peer.get("averaging", False)))
    except Rejected as exc:
        report.error("peer_evaluation", str(exc)[:4000])
        return 1
    text = "\n".join(feedback)[:FEEDBACK_CAP]
    for line in text.splitlines():
        report.log(f"{FEEDBACK} {line}")
    report.result(**numbers)
    return 0


if __name__ == "__main__":
    sys.exit(main())

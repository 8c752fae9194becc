"""One stage of a peer evaluator, in its own process: ``python -m sandbox.peer_stage FMT ...``.

``openevolve EVALUATOR FUNCTION PROGRAM OUT``: import the evaluator, call ``FUNCTION(PROGRAM)``,
write what it returned (metrics, artifacts, or the exception) to ``OUT`` as JSON. The parent
(:mod:`sandbox.peer_eval`) bounds the process's time and SIGKILLs its group at the limit, so a
stage that hangs really stops.
"""

from __future__ import annotations

import importlib.util
import json
import math
import sys
import traceback
from pathlib import Path
from typing import Any

TEXT_CAP = 8192


def plain(value: Any) -> Any:
    """A metric value as JSON: numbers stay numbers (bool included), anything else is text."""
    if isinstance(value, bool):
        return value
    if isinstance(value, (int, float)) or type(value).__module__ == "numpy" and hasattr(
            value, "item") and getattr(value, "ndim", 1) == 0:
        try:
            number = float(value)
        except (TypeError, ValueError):
            return {"__text__": str(value)[:TEXT_CAP]}
        return number if math.isfinite(number) else {"__float__": repr(number)}
    return {"__text__": str(value)[:TEXT_CAP]}


def artifact(value: Any) -> str:
    if isinstance(value, bytes):
        return f"<{len(value)} bytes>"
    return str(value)[:TEXT_CAP]


def run(evaluator: str, function: str, program: str) -> dict[str, Any]:
    folder = str(Path(evaluator).resolve().parent)
    if folder not in sys.path:
        sys.path.insert(0, folder)
    try:
        spec = importlib.util.spec_from_file_location("evaluation_module", evaluator)
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        result = getattr(module, function)(program)
    except BaseException as exc:  # the evaluator's failure is the stage's answer
        return {"exception": f"{type(exc).__name__}: {str(exc)[:2000]}",
                "traceback": traceback.format_exc()[-TEXT_CAP:]}
    artifacts: Any
    if isinstance(result, dict):
        metrics, artifacts = result, {}
    elif isinstance(getattr(result, "metrics", None), dict):
        metrics, artifacts = result.metrics, getattr(result, "artifacts", None) or {}
    else:
        metrics, artifacts = {"error": 0.0}, {"unexpected_result": type(result).__name__}
    return {"metrics": {str(k): plain(v) for k, v in metrics.items()},
            "artifacts": {str(k): artifact(v) for k, v in dict(artifacts).items()}}


if __name__ == "__main__":
    _fmt, _evaluator, _function, _program, _out = sys.argv[1:6]
    answer = run(_evaluator, _function, _program)
    Path(_out).write_text(json.dumps(answer))

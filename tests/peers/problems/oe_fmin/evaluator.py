"""Scores run_search: closeness of the point it reports to the known minimum (1.0 at best).

Stage 1 imports the program in this process; stage 2 runs it in a subprocess and reads its answer
back with pickle, as many published evaluators do."""
import importlib.util
import os
import pickle
import subprocess
import sys
import tempfile

import numpy as np
from openevolve.evaluation_result import EvaluationResult

TARGET = np.array([1.5, -0.5])


def _score(x, y):
    distance = float(np.linalg.norm(np.array([x, y]) - TARGET))
    return 1.0 / (1.0 + 10.0 * distance)


def evaluate_stage1(program_path):
    spec = importlib.util.spec_from_file_location("program", program_path)
    program = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(program)
    x, y, value = program.run_search(seed=0, iterations=50)
    return {"combined_score": _score(x, y), "value": value}


def evaluate_stage2(program_path):
    folder = tempfile.mkdtemp()
    out = os.path.join(folder, "answer.pkl")
    script = os.path.join(folder, "run.py")
    with open(script, "w") as handle:
        handle.write(
            "import importlib.util, pickle, sys\n"
            f"spec = importlib.util.spec_from_file_location('program', {program_path!r})\n"
            "program = importlib.util.module_from_spec(spec)\n"
            "spec.loader.exec_module(program)\n"
            f"pickle.dump([program.run_search(seed=s) for s in range(3)], open({out!r}, 'wb'))\n")
    subprocess.run([sys.executable, script], check=True, timeout=60)
    with open(out, "rb") as handle:
        answers = pickle.load(handle)
    scores = [_score(x, y) for x, y, _ in answers]
    return EvaluationResult(metrics={"combined_score": float(np.mean(scores)),
                                     "worst": float(np.min(scores)), "runs": len(scores)},
                            artifacts={"note": f"{len(scores)} runs"})


def evaluate(program_path):
    return evaluate_stage2(program_path)

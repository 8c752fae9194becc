"""A ShinkaEvolve-style evaluation runner, written for selfprog and compatible by behaviour.

``run_shinka_eval`` loads the program and calls its experiment function ``num_runs`` times: with
``get_experiment_kwargs(i)`` plus ``file_path`` (dropped for an experiment function that does not
take it, as older runners never passed it), or ``seed=i + 1``. It validates each result,
aggregates the results into metrics, adds the run times, and writes ``metrics.json`` and
``correct.json`` into ``results_dir``. Under selfprog's split isolation the module it loads is the
stub that forwards calls to the variant's own container. ``extra_data`` is written as JSON when it
is plain data and dropped otherwise: selfprog never writes or loads ``extra.pkl``.
"""

from __future__ import annotations

import importlib.util
import json
import os
import statistics
import time
from collections.abc import Callable
from typing import Any

ON_ERROR: dict[str, Any] = {
    "combined_score": 0.0, "execution_time_mean": 0.0, "execution_time_std": 0.0,
    "num_successful_runs": 0, "num_valid_runs": 0, "num_invalid_runs": 0,
    "all_validation_errors": [],
}


def load_program(program_path: str) -> Any:
    spec = importlib.util.spec_from_file_location("program", program_path)
    if spec is None or spec.loader is None:
        raise ImportError(f"cannot load a module from {program_path}")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def save_json_results(results_dir: str, metrics: dict[str, Any], correct: bool,
                      error: str | None = None) -> None:
    os.makedirs(results_dir, exist_ok=True)
    with open(os.path.join(results_dir, "correct.json"), "w") as handle:
        json.dump({"correct": correct, "error": error}, handle, indent=4, default=str)
    with open(os.path.join(results_dir, "metrics.json"), "w") as handle:
        json.dump(metrics, handle, indent=4, default=str)


def run_shinka_eval(program_path: str, results_dir: str, experiment_fn_name: str, num_runs: int,
                    get_experiment_kwargs: Callable[[int], dict[str, Any]] | None = None,
                    aggregate_metrics_fn: Callable[[list[Any]], dict[str, Any]] | None = None,
                    validate_fn: Callable[[Any], tuple[bool, str | None]] | None = None,
                    default_metrics_on_error: dict[str, Any] | None = None,
                    ) -> tuple[dict[str, Any], bool, str | None]:
    defaults = dict(default_metrics_on_error or ON_ERROR)
    correct, first_error = True, None
    errors: list[str] = []
    valid = invalid = 0
    results: list[Any] = []
    times: list[float] = []
    try:
        module = load_program(program_path)
        if not hasattr(module, experiment_fn_name):
            raise AttributeError(f"Experiment function '{experiment_fn_name}' not found in "
                                 f"{program_path}")
        experiment = getattr(module, experiment_fn_name)
        pass_path = True
        for index in range(num_runs):
            if get_experiment_kwargs:
                kwargs = {**get_experiment_kwargs(index), "file_path": program_path}
            else:
                kwargs = {"seed": index + 1}
            if not pass_path:
                kwargs.pop("file_path", None)
            started = time.perf_counter()
            try:
                result = experiment(**kwargs)
            except Exception as exc:  # an experiment written for a runner without file_path
                if "file_path" not in kwargs or "file_path" not in str(exc):
                    raise
                pass_path = False
                kwargs.pop("file_path")
                started = time.perf_counter()
                result = experiment(**kwargs)
            times.append(time.perf_counter() - started)
            results.append(result)
            if validate_fn:
                ok, why = validate_fn(result)
                if ok:
                    valid += 1
                else:
                    invalid += 1
                    correct = False
                    if why:
                        first_error = first_error or f"Validation failed: {why}"
                        if why not in errors:
                            errors.append(why)
        if aggregate_metrics_fn:
            metrics = aggregate_metrics_fn(results)
        else:
            metrics = {"num_successful_runs": len(results),
                       "first_run_result_type": str(type(results[0])) if results else "N/A",
                       "raw_results_preview": str(results[:2]) if results else "N/A"}
        metrics["execution_time_mean"] = statistics.fmean(times) if times else 0.0
        metrics["execution_time_std"] = statistics.pstdev(times) if times else 0.0
        if validate_fn:
            metrics.update(num_valid_runs=valid, num_invalid_runs=invalid,
                           all_validation_errors=errors)
    except Exception as exc:
        print(f"Evaluation error: {exc}")
        metrics = {key: defaults.get(key, value) for key, value in ON_ERROR.items()}
        if validate_fn:
            metrics["num_invalid_runs"] = len(results) or num_runs
            metrics["all_validation_errors"] = [str(exc)]
        first_error, correct = str(exc), False
    if "extra_data" in metrics:
        extra = metrics.pop("extra_data")
        try:
            text = json.dumps(extra)
        except (TypeError, ValueError):
            text = None
        if text is not None:
            os.makedirs(results_dir, exist_ok=True)
            with open(os.path.join(results_dir, "extra.json"), "w") as handle:
                handle.write(text)
    save_json_results(results_dir, metrics, correct, first_error)
    return metrics, correct, first_error

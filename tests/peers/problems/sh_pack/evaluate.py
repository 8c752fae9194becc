"""Checks a circle packing and scores the sum of radii."""
import argparse

import numpy as np
from shinka.core import run_shinka_eval

N = 6


def validate(result):
    centers, radii, reported = result
    centers, radii = np.asarray(centers), np.asarray(radii)
    if centers.shape != (N, 2) or radii.shape != (N,):
        return False, f"shapes {centers.shape} {radii.shape}"
    if np.any(radii < 0) or np.any(centers - radii[:, None] < -1e-9) or np.any(
            centers + radii[:, None] > 1 + 1e-9):
        return False, "a circle leaves the square"
    for i in range(N):
        for j in range(i + 1, N):
            if np.linalg.norm(centers[i] - centers[j]) < radii[i] + radii[j] - 1e-9:
                return False, f"circles {i} and {j} overlap"
    return True, None


def aggregate(results):
    sums = [float(np.sum(np.asarray(r[1]))) for r in results]
    return {"combined_score": float(np.mean(sums)),
            "public": {"best_sum": max(sums)},
            "private": {"reported": [float(r[2]) for r in results]},
            "text_feedback": f"sums of radii: {sums}"}


def main(program_path, results_dir):
    run_shinka_eval(program_path=program_path, results_dir=results_dir,
                    experiment_fn_name="run_packing", num_runs=2,
                    get_experiment_kwargs=lambda i: {"seed": i + 1, "n": N},
                    aggregate_metrics_fn=aggregate, validate_fn=validate)


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--program_path", default="initial.py")
    parser.add_argument("--results_dir", default="results")
    args = parser.parse_args()
    main(args.program_path, args.results_dir)

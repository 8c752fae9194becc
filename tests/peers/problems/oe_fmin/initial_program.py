"""Find the minimum of a bowl by random search (an OpenEvolve-format problem written for
selfprog's tests)."""
import numpy as np


# EVOLVE-BLOCK-START
def search(f, rng, iterations):
    best = rng.uniform(-4.0, 4.0, size=2)
    best_value = f(best)
    step = 1.0
    for _ in range(iterations):
        candidate = best + rng.normal(0.0, step, size=2)
        value = f(candidate)
        if value < best_value:
            best, best_value = candidate, value
        step = max(0.05, step * 0.995)
    return best
# EVOLVE-BLOCK-END


def bowl(point):
    x, y = point
    return (x - 1.5) ** 2 + (y + 0.5) ** 2


def run_search(seed=0, iterations=200):
    rng = np.random.default_rng(seed)
    x, y = search(bowl, rng, iterations)
    return float(x), float(y), float(bowl((x, y)))

"""Place n circles in the unit square to maximise the sum of their radii (a ShinkaEvolve-format
problem written for selfprog's tests)."""
import numpy as np


# EVOLVE-BLOCK-START
def construct(n, rng):
    side = int(np.ceil(np.sqrt(n)))
    cells = [(i, j) for i in range(side) for j in range(side)][:n]
    centers = np.array([[(i + 0.5) / side, (j + 0.5) / side] for i, j in cells])
    radii = np.full(n, 0.45 / side)
    return centers, radii
# EVOLVE-BLOCK-END


def run_packing(seed=1, n=6, **_):
    rng = np.random.default_rng(seed)
    centers, radii = construct(n, rng)
    return centers, radii, float(np.sum(radii))
